// Output bookkeeping by absolute offset: what to render on resume, and what to ACK. No DOM.

import { ProtocolError } from "./protocol.js";

/** ACK at once when this much has been rendered since the last ACK; otherwise on a short timer. */
export const ACK_EVERY_BYTES = 64 * 1024;

/** Counts a session's output: bytes received (handed to the terminal) and bytes rendered. */
export class OutputStream {
  /** Bytes handed to the terminal: the offset a resume asks the server to replay from. */
  received = 0;
  /** Bytes the terminal has finished rendering (its write callbacks fired). */
  rendered = 0;
  /** The last ACK sent on the current socket. */
  private acked = 0;

  /** The part of an OUTPUT frame not yet received, or null when it is all a replay. */
  accept(offset: number, data: Uint8Array): Uint8Array | null {
    if (offset > this.received) {
      throw new ProtocolError(`output gap: expected offset ${this.received}, got ${offset}`);
    }
    const skip = this.received - offset;
    if (skip >= data.length) return null;
    const fresh = skip > 0 ? data.subarray(skip) : data;
    this.received += fresh.length;
    return fresh;
  }

  markRendered(bytes: number): void {
    this.rendered = Math.min(this.received, this.rendered + bytes);
  }

  /** True when enough has been rendered since the last ACK that it should go out now. */
  ackUrgent(): boolean {
    return this.rendered - this.acked >= ACK_EVERY_BYTES;
  }

  /** The value to ACK now, or null when the server already has it. */
  takeAck(): number | null {
    if (this.rendered <= this.acked) return null;
    this.acked = this.rendered;
    return this.rendered;
  }

  /** A new socket: returns the ACK to send after HELLO, as the old socket's last ACKs may be lost. */
  newSocket(): number | null {
    this.acked = 0;
    return this.takeAck();
  }

  /** A new session starts at offset 0; a reloaded page, at the replay it asks for. */
  reset(offset = 0): void {
    this.received = offset;
    this.rendered = offset;
    this.acked = 0;
  }
}

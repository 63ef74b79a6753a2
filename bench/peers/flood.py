"""A flood of output into ec2-terminal's real page in headless Chromium, against xterm.js alone."""

from __future__ import annotations

from playwright.async_api import Page, async_playwright

from bench.peers.figures import Better, Figure
from bench.peers.servers import Peer, Target
from bench.peers.sizes import MIB, FloodRenderer
from bench.peers.stream import marker
from bench.peers.workloads import STEP_TIMEOUT, Context
from tests.browser import CHROMIUM, CHROMIUM_ARGS

#: Output written untimed first: more than the page's 5,000 lines of scrollback hold.
WARM_UP = 4 * MIB

# xterm.js's own time for the same number of base64 bytes, written in the page itself (as
# Uint8Array chunks, as the page writes socket data), at most 1 MiB unparsed at a time: its
# write buffer throws away data past 50 MB. Timed until the last write is parsed and a frame
# drawn.
_PARSE_ONLY_JS = """async (size) => {
  const term = window.__ec2terminal.term;
  const chunkSize = 65536, window_ = 16, chunks = [];
  const raw = new Uint8Array(chunkSize / 4 * 3);
  for (let i = 0; i < 16; i++) {
    crypto.getRandomValues(raw);
    let text = '';
    for (let j = 0; j < raw.length; j++) text += String.fromCharCode(raw[j]);
    chunks.push(new TextEncoder().encode(btoa(text)));
  }
  await new Promise((r) => term.write('\\r\\n', r));
  const started = performance.now();
  await new Promise((resolve) => {
    let written = 0, inFlight = 0, index = 0;
    const pump = () => {
      while (written < size && inFlight < window_) {
        const chunk = chunks[index++ % chunks.length].subarray(0, size - written);
        written += chunk.length;
        inFlight++;
        term.write(chunk, () => {
          inFlight--;
          if (written >= size && inFlight === 0) resolve();
          else pump();
        });
      }
    };
    pump();
  });
  await new Promise((r) => requestAnimationFrame(() => r()));
  return performance.now() - started;
}"""

# Resolves window.__flood with the milliseconds from window.__floodStart until a line near the
# cursor shows `marker` (checked each time xterm.js has parsed a write) and a frame is drawn.
_WATCH_JS = """(marker) => {
  const term = window.__ec2terminal.term;
  window.__flood = new Promise((resolve) => {
    const watch = term.onWriteParsed(() => {
      const buf = term.buffer.active;
      const end = buf.baseY + buf.cursorY;
      for (let i = Math.max(0, end - 3); i <= end; i++) {
        const line = buf.getLine(i);
        if (line && line.translateToString(true).includes(marker)) {
          watch.dispose();
          requestAnimationFrame(() => resolve(performance.now() - window.__floodStart));
          return;
        }
      }
    });
  });
}"""


# The same `cat` delivered to the same page over its socket, each OUTPUT acknowledged as soon as
# it arrives instead of written to xterm.js: how fast the bytes can reach the page at all (the
# PTY, sshd, the server, Chromium's network stack). Resolves window.__flood with the
# milliseconds from window.__floodStart until `marker` arrived and a frame is drawn; the
# terminal writes again afterwards. The marker is in the last bytes of the output (only a line
# break and the prompt follow it): the last 256 bytes of each chunk are searched, with the
# previous chunk's last 256 in front.
_DELIVER_ONLY_JS = """(marker) => {
  const renderer = window.__ec2terminal.connection.renderer;
  const write = renderer.write;
  const decoder = new TextDecoder('latin1');
  let carry = '';
  window.__flood = new Promise((resolve) => {
    renderer.write = (data, done) => {
      const tail = decoder.decode(data.subarray(Math.max(0, data.length - 256)));
      const seen = (carry + tail).includes(marker);
      carry = tail;
      done();
      if (seen) {
        renderer.write = write;
        requestAnimationFrame(() => resolve(performance.now() - window.__floodStart));
      }
    };
  });
}"""


async def _type(page: Page, text: str) -> None:
    await page.locator(".xterm-helper-textarea").focus()
    await page.keyboard.type(text)


async def flood(target: Target, ctx: Context) -> list[Figure]:
    """The payload's first N MiB `cat` into the page, timed until rendered, against parse-only
    and delivery-only (the bytes acknowledged unparsed), before and after it, best of two."""
    if target.peer is not Peer.EC2_TERMINAL or target.server is None:
        raise NotImplementedError("the flood runs on ec2-terminal's page only")
    size = min(ctx.sizes.flood_mib * MIB, ctx.payload.size)
    ready_cmd, ready = marker("READY")
    flood_cmd, flooded = marker("FLOOD")
    timeout_ms = (STEP_TIMEOUT + size / MIB * 2) * 1000
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page(viewport={"width": 900, "height": 500})
            page.set_default_timeout(timeout_ms)
            chosen = ctx.sizes.flood_renderer
            if chosen is not FloodRenderer.AUTO:
                # As a user chooses (web/src/renderer.ts), before the page's first script.
                await page.add_init_script(
                    f"localStorage.setItem('ec2-terminal:renderer', '{chosen}');"
                )
            await page.goto(target.server.link())
            await page.wait_for_function(
                "() => window.__ec2terminal && "
                "window.__ec2terminal.connection.uiState === 'connected'"
            )
            ctx.details["renderer"] = await page.evaluate("() => window.__ec2terminal.renderer")
            await page.evaluate(_WATCH_JS, ready.decode())
            await page.evaluate("() => { window.__floodStart = performance.now(); }")
            await _type(page, ready_cmd)
            await page.keyboard.press("Enter")
            await page.evaluate("() => window.__flood")
            # Untimed first: filling the empty scrollback allocates its lines, later writes
            # reuse them; JIT warm-up too. Then parse-only before and after the flood, best kept.
            await page.evaluate(_PARSE_ONLY_JS, min(size, WARM_UP))
            parse_ms = float(await page.evaluate(_PARSE_ONLY_JS, size))
            command = f"head -c {size} {ctx.payload.path}; echo; {flood_cmd}"
            deliver_ms = await _timed_cat(page, command, _DELIVER_ONLY_JS, flooded)
            flood_ms = await _timed_cat(page, command, _WATCH_JS, flooded)
            parse_ms = min(parse_ms, float(await page.evaluate(_PARSE_ONLY_JS, size)))
            deliver_ms = min(deliver_ms, await _timed_cat(page, command, _DELIVER_ONLY_JS, flooded))
        finally:
            await browser.close()
    return [
        Figure("flood: rendered in the page", flood_ms / 1000, "s", Better.LOWER),
        Figure("flood: xterm.js parse alone", parse_ms / 1000, "s", Better.NONE),
        Figure("flood: delivered alone", deliver_ms / 1000, "s", Better.NONE),
        Figure("flood: page / parse alone", flood_ms / parse_ms, "", Better.LOWER),
        Figure(
            "flood: page / slower of parse and delivery",
            flood_ms / max(parse_ms, deliver_ms),
            "",
            Better.LOWER,
        ),
    ]


async def _timed_cat(page: Page, command: str, watch_js: str, marker: bytes) -> float:
    """Milliseconds from Enter on `command` until `watch_js` saw `marker` (window.__flood)."""
    await page.evaluate(watch_js, marker.decode())
    await _type(page, command)
    await page.evaluate("() => { window.__floodStart = performance.now(); }")
    await page.keyboard.press("Enter")
    return float(await page.evaluate("() => window.__flood"))

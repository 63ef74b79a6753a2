// The sign-in form over the terminal, shown when the browser has no valid login.

function element<T extends HTMLElement>(doc: Document, id: string): T {
  const el = doc.getElementById(id);
  if (!el) throw new Error(`page is missing #${id}`);
  return el as T;
}

export class LoginForm {
  private readonly form: HTMLFormElement;
  private readonly input: HTMLInputElement;
  private readonly message: HTMLElement;
  private readonly button: HTMLButtonElement;

  constructor(doc: Document, submit: (token: string) => Promise<string | null>) {
    this.form = element<HTMLFormElement>(doc, "login");
    this.input = element<HTMLInputElement>(doc, "login-token");
    this.message = element(doc, "login-message");
    this.button = element<HTMLButtonElement>(doc, "login-submit");
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const token = this.input.value.trim();
      if (!token) return;
      this.button.disabled = true;
      void submit(token).then((problem) => {
        this.button.disabled = false;
        if (problem === null) {
          this.hide();
        } else {
          this.message.textContent = problem;
          this.input.select();
        }
      });
    });
  }

  get visible(): boolean {
    return !this.form.hidden;
  }

  /** Shows the form with `why` (for instance why the last login ended). */
  show(why: string): void {
    this.message.textContent = why || "Paste the access token of this terminal, or open a new link.";
    this.form.hidden = false;
    this.input.focus();
  }

  hide(): void {
    this.form.hidden = true;
    this.input.value = "";
  }
}

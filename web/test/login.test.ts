import { test } from "node:test";
import assert from "node:assert/strict";

import { loggedIn, logIn, tokenIn, type Fetch } from "../src/login.js";

test("a link's token comes from the fragment, and the clean address is the page alone", () => {
  assert.deepEqual(tokenIn("https://term.example.com/t/ns/a/#token=v1.1.abc.def"), {
    token: "v1.1.abc.def",
    cleanUrl: "https://term.example.com/t/ns/a/",
  });
});

test("older links carry the token in the query", () => {
  assert.deepEqual(tokenIn("http://127.0.0.1:8000/?token=s3cret&x=1#y"), {
    token: "s3cret",
    cleanUrl: "http://127.0.0.1:8000/",
  });
});

test("an address without a token needs no cleaning", () => {
  assert.equal(tokenIn("http://127.0.0.1:8000/t/demo/"), null);
  assert.equal(tokenIn("http://127.0.0.1:8000/t/demo/#token="), null);
});

function fakeFetch(status: number, body: unknown, calls: { url: string; init: RequestInit }[]): Fetch {
  return async (url, init) => {
    calls.push({ url, init });
    return {
      ok: status >= 200 && status < 300,
      status,
      json: async () => {
        if (body === undefined) throw new SyntaxError("not JSON");
        return body;
      },
    };
  };
}

test("a login POSTs the token as JSON beside the page, same-origin, never cached", async () => {
  const calls: { url: string; init: RequestInit }[] = [];
  const result = await logIn(fakeFetch(200, { authenticated: true }, calls), "https://h/t/a/", "tok");
  assert.deepEqual(result, { ok: true });
  assert.equal(calls[0]!.url, "https://h/t/a/login");
  assert.equal(calls[0]!.init.method, "POST");
  assert.equal(calls[0]!.init.body, JSON.stringify({ token: "tok" }));
  assert.equal(calls[0]!.init.credentials, "same-origin");
  assert.equal(calls[0]!.init.cache, "no-store");
});

test("a refused login reports the server's reason, or the status", async () => {
  const used = await logIn(fakeFetch(401, { error: "That link has already been used" }, []), "https://h/", "t");
  assert.deepEqual(used, { ok: false, message: "That link has already been used" });
  const odd = await logIn(fakeFetch(502, undefined, []), "https://h/", "t");
  assert.deepEqual(odd, { ok: false, message: "the server refused the login (HTTP 502)" });
  const down = await logIn(async () => Promise.reject(new TypeError("network")), "https://h/", "t");
  assert.deepEqual(down, { ok: false, message: "cannot reach the server" });
});

test("the login state is yes, no, or unknown when the server cannot be asked", async () => {
  assert.equal(await loggedIn(fakeFetch(200, { authenticated: true }, []), "https://h/"), true);
  assert.equal(await loggedIn(fakeFetch(200, { authenticated: false }, []), "https://h/"), false);
  assert.equal(await loggedIn(fakeFetch(503, {}, []), "https://h/"), null);
  assert.equal(await loggedIn(async () => Promise.reject(new TypeError("x")), "https://h/"), null);
});

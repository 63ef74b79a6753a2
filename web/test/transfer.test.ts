import { test } from "node:test";
import assert from "node:assert/strict";

import { errorMessage, filesUrl, landedPath, remotePath, savedName } from "../src/transfer.js";

test("an upload goes into the directory given, or the home directory", () => {
  assert.equal(remotePath("", "a.txt"), "a.txt");
  assert.equal(remotePath("  /tmp ", "a.txt"), "/tmp/a.txt");
  assert.equal(remotePath("/tmp/", "a.txt"), "/tmp/a.txt");
  assert.equal(remotePath("logs", "a b.txt"), "logs/a b.txt");
});

test("the endpoint is beside the page, with the path in the query and never the session", () => {
  assert.equal(filesUrl("http://h/t/x/", "/tmp/a b"), "http://h/t/x/files?path=%2Ftmp%2Fa+b");
  assert.equal(filesUrl("http://h/t/x/#view=1", "f", true), "http://h/t/x/files?path=f&overwrite=1");
});

test("a download keeps the server's name for it, or the path's", () => {
  assert.equal(savedName("attachment; filename=\"r_sum.pdf\"; filename*=UTF-8''r%C3%A9sum.pdf", "x"), "résum.pdf");
  assert.equal(savedName(null, "/var/log/syslog"), "syslog");
  assert.equal(savedName("attachment; filename*=UTF-8''%E0%A4%A", "/a/b/"), "b");
  assert.equal(savedName(null, "/"), "download");
});

test("errors show the server's message, or the status when the answer is not ours", () => {
  assert.deepEqual(errorMessage(404, '{"error": "f: no such file", "code": "file_not_found"}'), {
    code: "file_not_found",
    message: "f: no such file",
  });
  assert.deepEqual(errorMessage(502, "<html>Bad Gateway</html>"), { code: "", message: "the server answered HTTP 502" });
  assert.equal(landedPath('{"path": "/root/a"}', "a"), "/root/a");
  assert.equal(landedPath("nope", "a"), "a");
});

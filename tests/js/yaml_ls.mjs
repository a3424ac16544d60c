// Drive yaml-language-server over LSP (stdio) as an editor does, and print what it answers.
//
// stdin: {"documents": [{"uri", "text"}], "completions": [{"uri", "line", "character"}]}
// stdout: {"diagnostics": {uri: [{line, character, message}]}, "completions": [[item, ...]]}
// Each document names its schema in a `# yaml-language-server: $schema=` modeline.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const server = require.resolve("yaml-language-server/bin/yaml-language-server");

let input = "";
for await (const chunk of process.stdin) input += chunk;
const job = JSON.parse(input);

const child = spawn(process.execPath, [server, "--stdio"], { stdio: ["pipe", "pipe", "inherit"] });
let buffer = Buffer.alloc(0);
let nextId = 1;
const pending = new Map();
const diagnostics = new Map();
const diagnosticWaiters = new Map();

function send(message) {
  const body = Buffer.from(JSON.stringify({ jsonrpc: "2.0", ...message }), "utf8");
  child.stdin.write(`Content-Length: ${body.length}\r\n\r\n`);
  child.stdin.write(body);
}

function request(method, params) {
  const id = nextId++;
  send({ id, method, params });
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}

const settings = { yaml: { validate: true, completion: true, hover: true, format: { enable: false } } };

function handle(message) {
  if (message.id !== undefined && message.method === undefined) {
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    if (message.error) waiter.reject(new Error(message.error.message));
    else waiter.resolve(message.result);
  } else if (message.method === "workspace/configuration") {
    const answer = message.params.items.map((item) => {
      let value = settings;
      for (const part of (item.section ?? "").split(".").filter(Boolean)) value = value?.[part];
      return value ?? null;
    });
    send({ id: message.id, result: answer });
  } else if (message.id !== undefined) {
    send({ id: message.id, result: null }); // client/registerCapability and the like
  } else if (message.method === "textDocument/publishDiagnostics") {
    const { uri, diagnostics: found } = message.params;
    diagnostics.set(uri, found);
    diagnosticWaiters.get(uri)?.(found);
  }
}

child.stdout.on("data", (chunk) => {
  buffer = Buffer.concat([buffer, chunk]);
  for (;;) {
    const end = buffer.indexOf("\r\n\r\n");
    if (end < 0) return;
    const length = Number(/Content-Length: (\d+)/i.exec(buffer.subarray(0, end).toString())[1]);
    if (buffer.length < end + 4 + length) return;
    handle(JSON.parse(buffer.subarray(end + 4, end + 4 + length).toString("utf8")));
    buffer = buffer.subarray(end + 4 + length);
  }
});

await request("initialize", {
  processId: process.pid,
  rootUri: null,
  capabilities: {
    workspace: { configuration: true },
    textDocument: {
      completion: { completionItem: { snippetSupport: true, documentationFormat: ["markdown"] } },
      publishDiagnostics: {},
    },
  },
});
send({ method: "initialized", params: {} });
send({ method: "workspace/didChangeConfiguration", params: { settings } });

const result = { diagnostics: {}, completions: [] };
for (const doc of job.documents) {
  const published = new Promise((resolve) => diagnosticWaiters.set(doc.uri, resolve));
  send({
    method: "textDocument/didOpen",
    params: { textDocument: { uri: doc.uri, languageId: "yaml", version: 1, text: doc.text } },
  });
  const found = await published;
  result.diagnostics[doc.uri] = found.map((d) => ({
    line: d.range.start.line,
    character: d.range.start.character,
    message: d.message,
  }));
}
for (const at of job.completions ?? []) {
  const answer = await request("textDocument/completion", {
    textDocument: { uri: at.uri },
    position: { line: at.line, character: at.character },
  });
  const items = Array.isArray(answer) ? answer : (answer?.items ?? []);
  result.completions.push(
    items.map((item) => ({
      label: item.label,
      kind: item.kind,
      insertText: item.textEdit?.newText ?? item.insertText ?? item.label,
      range: item.textEdit?.range ?? item.textEdit?.replace ?? null,
    })),
  );
}
await request("shutdown", null);
send({ method: "exit" });
process.stdout.write(JSON.stringify(result) + "\n");

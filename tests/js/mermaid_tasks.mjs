// Parse every ```mermaid block read on stdin with Mermaid's own parser and print, per
// block, the chart title and the task names it holds (or the parser's error) as JSON.
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });

let input = "";
for await (const chunk of process.stdin) input += chunk;
const blocks = [...input.matchAll(/```mermaid\n([\s\S]*?)```/g)].map((m) => m[1]);
const charts = [];
for (const text of blocks) {
  try {
    const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
    const db = diagram.db;
    charts.push({
      title: db.getDiagramTitle(),
      tasks: db.getTasks().map((t) => t.task),
    });
  } catch (error) {
    charts.push({ error: String(error.message ?? error) });
  }
}
process.stdout.write(JSON.stringify(charts) + "\n");

#!/usr/bin/env node
// deploy/k8s/tools/validate.mjs: validate rendered Kubernetes manifests
// offline and strictly.
//
//   node validate.mjs FILE.yaml...     ("-" reads standard input)
//
// Neither Debian nor npm carries kubeconform or kubeval, so the checking
// is done by two npm packages, both generated from the Kubernetes OpenAPI
// specification of one release (kubernetes-models 5.x: Kubernetes 1.36):
//
//   1. the JSON-schema validators that kubernetes-models compiles with ajv
//      (types, required fields, enums, formats such as int32 and
//      quantities), run through each model's validate();
//   2. the TypeScript compiler checking every object, as an object
//      literal, against the model's interface (IDeployment, ...): its
//      excess-property check refuses any field the API does not have, at
//      any depth (ajv's schemas allow unknown fields; Kubernetes drops them
//      silently, which hides typos such as "imagePullPolice").
//
// This script only feeds objects to those two and reports what they say:
// one line per object, "ok  KIND NAMESPACE/NAME" or "invalid  KIND
// NAMESPACE/NAME: MESSAGE", then a summary.  An object whose apiVersion
// and kind have no model is an error (no silent skip).  Exit status: 0 all
// valid, 1 something invalid, 2 bad usage or unreadable input.
// Nothing is fetched: the schemas are in node_modules.

import { readFileSync, mkdtempSync, writeFileSync, symlinkSync, rmSync }
    from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { parseAllDocuments } from "yaml";
import ts from "typescript";

const HERE = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const MODELS_VERSION = require("kubernetes-models/package.json").version;
export const KUBERNETES_VERSION = "1.36";

function usage(msg) {
    process.stderr.write(`validate.mjs: ${msg}\n` +
        "usage: node validate.mjs FILE.yaml... (- for standard input)\n");
    process.exit(2);
}

// "apps/v1" -> "apps/v1", "v1" -> "v1": the module path of a model.
function modelPath(apiVersion, kind) {
    return `kubernetes-models/${apiVersion}/${kind}`;
}

function describe(obj, n) {
    if (typeof obj !== "object" || Array.isArray(obj)) {
        return `document ${n}`;
    }
    const md = obj.metadata ?? {};
    const ns = md.namespace ? `${md.namespace}/` : "";
    return `${obj.kind} ${ns}${md.name ?? "(no name)"}`;
}

// Load every document of every input; YAML errors stop everything.
function load(files) {
    const objs = [];
    for (const f of files) {
        let text;
        try {
            text = readFileSync(f === "-" ? 0 : f, "utf8");
        } catch (e) {
            usage(`cannot read ${f}: ${e.message}`);
        }
        for (const doc of parseAllDocuments(text)) {
            if (doc.errors.length) {
                usage(`${f}: YAML error: ${doc.errors[0].message}`);
            }
            const obj = doc.toJS();
            if (obj === null || obj === undefined) continue;
            objs.push({ file: f, obj });
        }
    }
    return objs;
}

// Pass 1: the model exists and its ajv schema accepts the object.
async function schemaPass(items) {
    for (const it of items) {
        const { obj } = it;
        if (typeof obj !== "object" || Array.isArray(obj) ||
            typeof obj.apiVersion !== "string" ||
            typeof obj.kind !== "string") {
            it.errors.push("not a Kubernetes object (apiVersion and kind " +
                "must be strings)");
            continue;
        }
        let mod;
        try {
            mod = await import(modelPath(obj.apiVersion, obj.kind));
        } catch {
            it.errors.push(`no schema for apiVersion ${obj.apiVersion} ` +
                `kind ${obj.kind} in Kubernetes ${KUBERNETES_VERSION}`);
            continue;
        }
        const Model = mod[obj.kind];
        it.iface = `I${obj.kind}`;
        try {
            new Model(structuredClone(obj)).validate();
        } catch (e) {
            for (const err of e.errors ?? [{ message: e.message }]) {
                const where = err.instancePath || "/";
                it.errors.push(`${where}: ${err.message}`);
            }
        }
    }
}

// Pass 2: every object as a typed literal; tsc names unknown fields and
// type mismatches.  Each object gets its own line range so a diagnostic
// maps back to it.
function strictPass(items) {
    const typed = items.filter((it) => it.iface);
    if (!typed.length) return;
    const dir = mkdtempSync(join(tmpdir(), "mcos-k8s-validate-"));
    try {
        symlinkSync(join(HERE, "node_modules"), join(dir, "node_modules"));
        const lines = [];
        typed.forEach((it, i) => {
            lines.push(`import type { ${it.iface} as T${i} } from ` +
                `"${modelPath(it.obj.apiVersion, it.obj.kind)}";`);
        });
        typed.forEach((it, i) => {
            it.firstLine = lines.length;
            const body = JSON.stringify(it.obj, null, 2).split("\n");
            body[0] = `export const o${i}: T${i} = ${body[0]}`;
            body[body.length - 1] += ";";
            lines.push(...body);
            it.lastLine = lines.length - 1;
            it.body = body;
        });
        const file = join(dir, "objects.ts");
        writeFileSync(file, lines.join("\n") + "\n");
        const program = ts.createProgram([file], {
            strict: true,
            noEmit: true,
            skipLibCheck: true,
            target: ts.ScriptTarget.ES2022,
            module: ts.ModuleKind.NodeNext,
            moduleResolution: ts.ModuleResolutionKind.NodeNext,
            types: [],
        });
        for (const d of ts.getPreEmitDiagnostics(program)) {
            const msg = ts.flattenDiagnosticMessageText(d.messageText, " ");
            if (!d.file || d.file.fileName !== file) {
                throw new Error(`typescript: ${msg}`);
            }
            const { line } = d.file.getLineAndCharacterOfPosition(d.start);
            const it = typed.find((t) => line >= t.firstLine &&
                line <= t.lastLine);
            if (!it) throw new Error(`typescript: line ${line + 1}: ${msg}`);
            // The JSON line that tsc points at, for a reader.
            const src = it.body[line - it.firstLine].trim()
                .replace(/^export const o\d+: T\d+ = /, "");
            it.errors.push(`${msg} (at ${src})`);
        }
    } finally {
        rmSync(dir, { recursive: true, force: true });
    }
}

async function main() {
    const files = process.argv.slice(2);
    if (!files.length) usage("no input files");
    const items = load(files).map((x) => ({ ...x, errors: [] }));
    if (!items.length) usage("no objects in the input");
    await schemaPass(items);
    strictPass(items);
    let bad = 0;
    items.forEach((it, n) => {
        const what = describe(it.obj, n + 1);
        if (it.errors.length) {
            bad++;
            for (const e of it.errors) console.log(`invalid  ${what}: ${e}`);
        } else {
            console.log(`ok  ${what}`);
        }
    });
    console.log(`${items.length - bad} valid, ${bad} invalid ` +
        `(Kubernetes ${KUBERNETES_VERSION} schemas, kubernetes-models ` +
        `${MODELS_VERSION}, strict)`);
    process.exit(bad ? 1 : 0);
}

main().catch((e) => {
    process.stderr.write(`validate.mjs: ${e.message}\n`);
    process.exit(2);
});

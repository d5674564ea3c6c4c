// Offline validation of inferd's deployment files, run by scripts/validate_deploy.sh.
//
//   node validate.mjs [--dockerfile FILE]... MANIFEST.yaml...
//
// Every YAML document is checked three ways, and any problem fails the run:
//  1. parsing: the yaml package in strict mode (duplicate keys are errors);
//  2. JSON schema: each Kubernetes object is instantiated as its kubernetes-models class and
//     validated against the API's OpenAPI schema (types, enums, required fields, formats).
//     KServe objects, whose CRD schemas no maintained package ships, have their embedded
//     Kubernetes parts (containers, volumes) validated the same way;
//  3. field names: the objects are type-checked by the TypeScript compiler against the
//     kubernetes-models type declarations (and deploy/validate/kserve.d.ts for KServe), where
//     excess-property checks reject unknown fields: a misspelt `readinesProbe` is valid JSON
//     schema-wise (Kubernetes' schemas allow extra keys) but an error here, as it would be for
//     a strict API server.
// Kustomization files are skipped here (scripts/validate_deploy.sh renders them with
// `kubectl kustomize` when kubectl is present).
//
// Dockerfiles are linted with dockerfile-utils (the linter behind the Docker language server).
//
// Prints one line per problem as "file[#doc]: message", then a summary line; exits 1 when
// there were problems, 2 on bad usage.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import YAML from "yaml";
import ts from "typescript";
import { validate as lintDockerfile } from "dockerfile-utils";

const here = path.dirname(fileURLToPath(import.meta.url));

const problems = [];
function problem(where, msg) {
    problems.push(`${where}: ${msg}`);
}

// "apps/v1" -> the kubernetes-models module that holds its kinds.
function modelModule(apiVersion) {
    return apiVersion.includes("/") ? `kubernetes-models/${apiVersion}` : "kubernetes-models/v1";
}

function schemaMessage(e) {
    // kubernetes-models throws ajv's ValidationError: one entry per failed keyword.
    if (Array.isArray(e?.errors) && e.errors.length) {
        return e.errors
            .map((x) => {
                const extra = x.params?.allowedValues
                    ? ` (${x.params.allowedValues.join(", ")})`
                    : x.params?.missingProperty
                      ? ` (${x.params.missingProperty})`
                      : "";
                return `${x.instancePath || "/"} ${x.message}${extra}`;
            })
            .join("; ");
    }
    return String(e?.message ?? e);
}

async function validateSchema(where, obj) {
    let mod;
    try {
        mod = await import(modelModule(obj.apiVersion));
    } catch {
        problem(where, `unknown apiVersion ${obj.apiVersion}`);
        return null;
    }
    const Model = mod[obj.kind];
    if (typeof Model !== "function" || Model.apiVersion !== obj.apiVersion) {
        problem(where, `unknown kind ${obj.kind} in ${obj.apiVersion}`);
        return null;
    }
    try {
        new Model(obj).validate();
    } catch (e) {
        problem(where, `schema: ${schemaMessage(e)}`);
    }
    // The TypeScript declaration to check the field names against.
    return { from: `${modelModule(obj.apiVersion)}/${obj.kind}`, type: `I${obj.kind}` };
}

const PROTOCOLS = new Set(["v1", "v2", "grpc-v1", "grpc-v2"]);

async function validateKServe(where, obj) {
    const { Container, Volume } = await import("kubernetes-models/v1");
    const check = (label, Model, value) => {
        try {
            new Model(value).validate();
        } catch (e) {
            problem(where, `schema: ${label}: ${schemaMessage(e)}`);
        }
    };
    if (!obj.metadata?.name) problem(where, "metadata.name is required");
    const spec = obj.spec ?? {};
    if (obj.kind === "ServingRuntime" || obj.kind === "ClusterServingRuntime") {
        if (!Array.isArray(spec.containers) || spec.containers.length === 0)
            problem(where, "spec.containers: at least one container is required");
        (spec.containers ?? []).forEach((c, i) => check(`spec.containers[${i}]`, Container, c));
        (spec.volumes ?? []).forEach((v, i) => check(`spec.volumes[${i}]`, Volume, v));
        (spec.protocolVersions ?? []).forEach((p, i) => {
            if (!PROTOCOLS.has(p))
                problem(where, `spec.protocolVersions[${i}]: '${p}' is not one of ${[...PROTOCOLS]}`);
        });
        (spec.supportedModelFormats ?? []).forEach((f, i) => {
            if (typeof f?.name !== "string" || !f.name)
                problem(where, `spec.supportedModelFormats[${i}].name is required`);
            if (f?.priority !== undefined && !(Number.isInteger(f.priority) && f.priority >= 1))
                problem(where, `spec.supportedModelFormats[${i}].priority must be an integer >= 1`);
        });
        return { from: path.join(here, "kserve"), type: "IServingRuntime" };
    }
    if (obj.kind === "InferenceService") {
        const p = spec.predictor;
        if (!p) {
            problem(where, "spec.predictor is required");
        } else {
            if (p.model) {
                if (!p.model.modelFormat?.name)
                    problem(where, "spec.predictor.model.modelFormat.name is required");
                if (p.model.protocolVersion && !PROTOCOLS.has(p.model.protocolVersion))
                    problem(where, `spec.predictor.model.protocolVersion '${p.model.protocolVersion}'`);
                // A model is a container without a required name.
                check("spec.predictor.model", Container, {
                    name: "kserve-container",
                    ...Object.fromEntries(
                        Object.entries(p.model).filter(
                            ([k]) => !["modelFormat", "runtime", "protocolVersion", "storageUri"].includes(k),
                        ),
                    ),
                });
            }
            (p.containers ?? []).forEach((c, i) => check(`spec.predictor.containers[${i}]`, Container, c));
            (p.volumes ?? []).forEach((v, i) => check(`spec.predictor.volumes[${i}]`, Volume, v));
        }
        return { from: path.join(here, "kserve"), type: "IInferenceService" };
    }
    problem(where, `unknown KServe kind ${obj.kind}`);
    return null;
}

// Type-checks every object against its declaration; returns the number checked.
function typeCheck(entries) {
    if (entries.length === 0) return 0;
    const dir = path.join(here, ".gen");
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, "manifests.ts");
    const lines = [];
    const owners = []; // [first line, where]: maps a diagnostic's line back to its document
    entries.forEach((e, i) => {
        const from = path.isAbsolute(e.from) ? path.relative(dir, e.from).split(path.sep).join("/") : e.from;
        lines.push(`import type { ${e.type} as T${i} } from "${from}";`);
    });
    entries.forEach((e, i) => {
        owners.push([lines.length, e.where]);
        // One array entry per line, so that owners' line numbers are the file's.
        lines.push(...`export const doc${i}: T${i} = ${JSON.stringify(e.obj, null, 2)};`.split("\n"));
    });
    fs.writeFileSync(file, lines.join("\n") + "\n");
    const options = {
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.ESNext,
        moduleResolution: ts.ModuleResolutionKind.Bundler,
        types: [],
    };
    const program = ts.createProgram([file], options);
    const diags = ts.getPreEmitDiagnostics(program);
    for (const d of diags) {
        const msg = ts.flattenDiagnosticMessageText(d.messageText, " ");
        if (d.file && path.resolve(d.file.fileName) === path.resolve(file) && d.start !== undefined) {
            const { line } = d.file.getLineAndCharacterOfPosition(d.start);
            let where = "(generated)";
            for (const [first, w] of owners) if (line >= first) where = w;
            // The line names the field: `"readinesProbe": {`.
            const text = d.file.text.split("\n")[line].trim();
            problem(where, `fields: ${msg} [at ${text}]`);
        } else {
            problem(d.file ? d.file.fileName : "typescript", `fields: ${msg}`);
        }
    }
    return entries.length;
}

async function main(argv) {
    const dockerfiles = [];
    const manifests = [];
    for (let i = 0; i < argv.length; i++) {
        if (argv[i] === "--dockerfile" && i + 1 < argv.length) dockerfiles.push(argv[++i]);
        else if (argv[i].startsWith("-")) {
            console.error(`validate.mjs: unknown option ${argv[i]}`);
            return 2;
        } else manifests.push(argv[i]);
    }
    if (manifests.length === 0 && dockerfiles.length === 0) {
        console.error("usage: node validate.mjs [--dockerfile FILE]... MANIFEST.yaml...");
        return 2;
    }

    const typed = [];
    let objects = 0;
    let skipped = 0;
    for (const f of manifests) {
        const docs = YAML.parseAllDocuments(fs.readFileSync(f, "utf8"), { strict: true, uniqueKeys: true });
        for (const [i, doc] of docs.entries()) {
            const where = docs.length > 1 ? `${f}#${i}` : f;
            if (doc.errors.length) {
                for (const e of doc.errors) problem(where, `yaml: ${e.message.split("\n")[0]}`);
                continue;
            }
            const obj = doc.toJS();
            if (obj === null || obj === undefined) continue; // an empty document
            if (typeof obj !== "object" || !obj.apiVersion || !obj.kind) {
                problem(where, "not a Kubernetes object (apiVersion and kind are required)");
                continue;
            }
            if (obj.apiVersion.startsWith("kustomize.config.k8s.io/")) {
                skipped++;
                continue;
            }
            objects++;
            const decl = obj.apiVersion.startsWith("serving.kserve.io/")
                ? await validateKServe(where, obj)
                : await validateSchema(where, obj);
            if (decl) typed.push({ ...decl, where, obj });
        }
    }
    const checked = typeCheck(typed);

    let dockerProblems = 0;
    for (const f of dockerfiles) {
        for (const d of lintDockerfile(fs.readFileSync(f, "utf8"))) {
            // Severity 1 is an error, 2 a warning: both fail, as hadolint's defaults would.
            dockerProblems++;
            problem(`${f}:${d.range.start.line + 1}`, `dockerfile: ${d.message}`);
        }
    }

    for (const p of problems) console.log(p);
    console.log(
        `validate.mjs: ${objects} objects (${checked} type-checked, ${skipped} kustomizations skipped), ` +
            `${dockerfiles.length} Dockerfiles (${dockerProblems} problem(s)): ` +
            (problems.length ? `${problems.length} problem(s)` : "all valid"),
    );
    return problems.length ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));

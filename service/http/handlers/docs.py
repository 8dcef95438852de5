"""`/openapi.json` (the generated OpenAPI document) and `/docs` (a page that renders it).

Neither needs an API key: the edge middleware authenticates `/v1` paths only.
The page is self-contained (inline script and style, nothing from a CDN): the
service often runs where there is no network.
"""

from __future__ import annotations

from aiohttp import web

from service.http.errors import json_response
from service.http.openapi import openapi_document


async def openapi_json(request: web.Request) -> web.Response:
    """`GET /openapi.json`: the OpenAPI 3.1 document of the routes this app serves."""
    return json_response(openapi_document(request.app))


async def docs_page(request: web.Request) -> web.Response:
    """`GET /docs`: an HTML page that fetches `/openapi.json` and renders it."""
    return web.Response(
        text=DOCS_HTML,
        content_type="text/html",
        # The page loads nothing but itself and the document; say so to the browser.
        headers={
            "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline';"
            " style-src 'unsafe-inline'; connect-src 'self'"
        },
    )


# Every text from the document is set with textContent, never as HTML: the
# descriptions come from docstrings and must not be able to inject markup.
DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>API documentation</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
  header { background: #1d2330; color: #fff; padding: 16px 32px; }
  header h1 { margin: 0 0 4px; font-size: 22px; }
  main { display: grid; grid-template-columns: 260px 1fr; gap: 24px; padding: 24px 32px; }
  nav { position: sticky; top: 12px; align-self: start; max-height: 95vh; overflow: auto;
        font-size: 13px; }
  nav a { display: block; color: #1d2330; text-decoration: none; padding: 2px 0; }
  nav a:hover { text-decoration: underline; }
  nav h3 { margin: 14px 0 4px; font-size: 12px; text-transform: uppercase; color: #667; }
  section.op, section.schema { background: #fff; border: 1px solid #dde1e7; border-radius: 6px;
        padding: 12px 16px; margin: 0 0 14px; }
  .method { display: inline-block; min-width: 60px; text-align: center; font-weight: 700;
        color: #fff; border-radius: 4px; padding: 2px 6px; margin-right: 8px; font-size: 13px; }
  .get { background: #2f7d32; } .post { background: #1565c0; } .patch { background: #8d5b00; }
  .delete { background: #b3261e; } .put { background: #6a1b9a; }
  code, .path { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
  .path { font-weight: 600; }
  table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; font-size: 13px; }
  th, td { text-align: left; border-bottom: 1px solid #eceff3; padding: 4px 8px;
        vertical-align: top; }
  th { color: #556; font-weight: 600; }
  .muted { color: #667; } .req { color: #b3261e; font-weight: 600; }
  .status { font-weight: 700; } h2 { margin: 26px 0 10px; }
  .desc { white-space: pre-wrap; margin: 6px 0; }
  #error { color: #b3261e; }
</style>
</head>
<body>
<header><h1 id="title">API documentation</h1><div id="subtitle" class="muted"></div></header>
<main><nav id="nav"></nav><div id="content"><p id="error">Loading /openapi.json ...</p></div></main>
<script>
"use strict";
const SPEC_URL = "/openapi.json";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function refName(ref) { return ref.split("/").pop(); }
function anchor(name) { return "schema-" + name.replace(/[^A-Za-z0-9_-]/g, "_"); }

// A one-line, readable summary of a JSON schema, with links to named schemas.
function typeOf(schema) {
  const span = el("code");
  if (!schema || Object.keys(schema).length === 0) { span.append("any"); return span; }
  if (schema.$ref) {
    span.append(el("a", {href: "#" + anchor(refName(schema.$ref))}, refName(schema.$ref)));
    return span;
  }
  const alternatives = schema.anyOf || schema.oneOf;
  if (alternatives) {
    alternatives.forEach((item, i) => { if (i) span.append(" | "); span.append(typeOf(item)); });
    return span;
  }
  if (schema.enum) {
    span.append(schema.enum.map(v => JSON.stringify(v)).join(" | "));
    return span;
  }
  if (schema.const !== undefined) { span.append(JSON.stringify(schema.const)); return span; }
  if (schema.type === "array") {
    span.append("array of ", typeOf(schema.items || {}));
    return span;
  }
  if (schema.type === "object" && schema.additionalProperties) {
    span.append("object of ", typeOf(schema.additionalProperties));
    return span;
  }
  span.append(Array.isArray(schema.type) ? schema.type.join(" | ") : (schema.type || "any"));
  return span;
}

function constraints(schema) {
  const parts = [];
  for (const key of ["minimum", "maximum", "minLength", "maxLength", "pattern", "format"]) {
    if (schema && schema[key] !== undefined) parts.push(key + " " + schema[key]);
  }
  if (schema && schema.default !== undefined) {
    parts.push("default " + JSON.stringify(schema.default));
  }
  return parts.join(", ");
}

function parametersTable(parameters) {
  const table = el("table", {}, el("tr", {},
    el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "description")));
  for (const p of parameters) {
    table.append(el("tr", {},
      el("td", {}, el("code", {}, p.name), p.required ? el("span", {class: "req"}, " *") : null),
      el("td", {}, p.in),
      el("td", {}, typeOf(p.schema), " ", el("span", {class: "muted"}, constraints(p.schema))),
      el("td", {}, p.description || "")));
  }
  return table;
}

function contentOf(content) {
  const cell = el("span");
  for (const [mediaType, media] of Object.entries(content || {})) {
    cell.append(el("span", {class: "muted"}, mediaType + " "), typeOf(media.schema), " ");
  }
  return cell;
}

function renderOperation(method, path, op) {
  const id = "op-" + (op.operationId || method + path).replace(/[^A-Za-z0-9_-]/g, "_");
  const section = el("section", {class: "op", id: id},
    el("div", {}, el("span", {class: "method " + method}, method.toUpperCase()),
       el("span", {class: "path"}, path), "  ", el("span", {}, op.summary || "")));
  if (op.description) section.append(el("div", {class: "desc"}, op.description));
  const auth = (op.security && op.security.length)
    ? "Auth: " + op.security.map(s => Object.keys(s).join(" + ")).join(" or ")
    : "No API key needed";
  section.append(el("div", {class: "muted"},
    auth + "  ·  operationId ", el("code", {}, op.operationId || "")));
  if (op.parameters && op.parameters.length) {
    section.append(el("h4", {}, "Parameters"), parametersTable(op.parameters));
  }
  if (op.requestBody) {
    section.append(el("h4", {}, "Request body"), contentOf(op.requestBody.content));
  }
  const responses = el("table", {}, el("tr", {},
    el("th", {}, "status"), el("th", {}, "body"), el("th", {}, "when")));
  for (const [status, response] of Object.entries(op.responses || {})) {
    responses.append(el("tr", {}, el("td", {class: "status"}, status),
      el("td", {}, contentOf(response.content)), el("td", {}, response.description || "")));
  }
  section.append(el("h4", {}, "Responses"), responses);
  return [section, id];
}

function renderSchema(name, schema) {
  const section = el("section", {class: "schema", id: anchor(name)}, el("h3", {}, name));
  if (schema.description) section.append(el("div", {class: "desc"}, schema.description));
  if (schema.properties) {
    const required = new Set(schema.required || []);
    const table = el("table", {}, el("tr", {},
      el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "notes")));
    for (const [field, property] of Object.entries(schema.properties)) {
      table.append(el("tr", {},
        el("td", {}, el("code", {}, field),
          required.has(field) ? el("span", {class: "req"}, " *") : null),
        el("td", {}, typeOf(property)),
        el("td", {class: "muted"}, constraints(property))));
    }
    section.append(table);
  } else {
    section.append(el("div", {}, typeOf(schema)));
  }
  if (schema.discriminator) {
    section.append(el("div", {class: "muted"},
      "Tagged by ", el("code", {}, schema.discriminator.propertyName)));
  }
  return section;
}

function render(doc) {
  document.title = doc.info.title + " " + doc.info.version;
  document.getElementById("title").textContent = doc.info.title;
  document.getElementById("subtitle").textContent =
    "version " + doc.info.version + "  ·  OpenAPI " + doc.openapi + "  ·  " + SPEC_URL;
  const nav = document.getElementById("nav");
  const content = document.getElementById("content");
  content.replaceChildren();
  if (doc.info.description) content.append(el("div", {class: "desc"}, doc.info.description));
  const byTag = new Map((doc.tags || []).map(tag => [tag.name, []]));
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags && op.tags[0]) || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([method, path, op]);
    }
  }
  const tagText = new Map((doc.tags || []).map(tag => [tag.name, tag.description || ""]));
  for (const [tag, ops] of byTag) {
    if (!ops.length) continue;
    nav.append(el("h3", {}, tag));
    content.append(el("h2", {}, tag), el("p", {class: "muted"}, tagText.get(tag) || ""));
    for (const [method, path, op] of ops) {
      const [section, id] = renderOperation(method, path, op);
      content.append(section);
      nav.append(el("a", {href: "#" + id}, method.toUpperCase() + " " + path));
    }
  }
  const schemas = (doc.components && doc.components.schemas) || {};
  nav.append(el("h3", {}, "schemas"));
  content.append(el("h2", {}, "Schemas"));
  for (const [name, schema] of Object.entries(schemas)) {
    content.append(renderSchema(name, schema));
    nav.append(el("a", {href: "#" + anchor(name)}, name));
  }
  if (location.hash) {
    const target = document.getElementById(location.hash.slice(1));
    if (target) target.scrollIntoView();
  }
}

fetch(SPEC_URL)
  .then(response => {
    if (!response.ok) throw new Error(SPEC_URL + " answered " + response.status);
    return response.json();
  })
  .then(render)
  .catch(error => { document.getElementById("error").textContent = String(error); });
</script>
</body>
</html>
"""

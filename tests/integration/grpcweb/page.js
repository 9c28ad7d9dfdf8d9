// The browser test page: fetches the descriptor set from the page's server, calls the edge given
// in ?edge= in both modes, and leaves the results in window.results (window.done when finished).
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import * as grpcWeb from "grpc-web";

import { binaryCalls, schema, textCalls } from "./calls.js";

async function main() {
  const edge = new URLSearchParams(location.search).get("edge");
  const s = schema(new Uint8Array(await (await fetch("/web.pb")).arrayBuffer()));
  const results = {};
  results.binary = await binaryCalls(s, createGrpcWebTransport({ baseUrl: edge, useBinaryFormat: true }));
  results.text = await textCalls(s, grpcWeb, edge);
  return results;
}

main().then(
  (r) => {
    window.results = r;
    window.done = true;
  },
  (e) => {
    window.results = { failed: String(e && e.stack ? e.stack : e) };
    window.done = true;
  },
);

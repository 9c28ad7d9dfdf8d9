// Node, with the same libraries: the binary calls over HTTP/2 and over HTTP/1.1 (connect-node's
// gRPC-Web transport), printed as JSON. node node_check.mjs <edge url> <ca.pem> <web.pb>
import { readFileSync } from "node:fs";
import { createGrpcWebTransport } from "@connectrpc/connect-node";

import { binaryCalls, schema } from "./calls.js";

const [edge, ca, desc] = process.argv.slice(2);
const s = schema(new Uint8Array(readFileSync(desc)));
const out = {};
for (const httpVersion of ["2", "1.1"]) {
  // The edge takes HTTP/1.1 only when ALPN asks for it (browsers and curl do; Node's https must be told).
  const nodeOptions = { ca: readFileSync(ca), ...(httpVersion === "1.1" ? { ALPNProtocols: ["http/1.1"] } : {}) };
  const transport = createGrpcWebTransport({ baseUrl: edge, httpVersion, nodeOptions });
  out["http" + httpVersion] = await binaryCalls(s, transport);
}
console.log(JSON.stringify(out));

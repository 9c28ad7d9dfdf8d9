// The gRPC-Web calls the tests make, the same in the browser and in Node: demo.Echo's Unary and
// Repeat (server streaming) with demo.Note messages built at run time from the descriptor set, in
// binary mode (@connectrpc/connect-web's gRPC-Web transport, or connect-node's) and in text mode
// (grpc-web, format "text"). Returns plain results the test compares.
import { create, createFileRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { ConnectError, createClient } from "@connectrpc/connect";

export const ATTACK = "1' UNION SELECT password FROM users --";
export const REASON = "order 42 not found: ünïcode ✓";

export function schema(descriptorSet) {
  const reg = createFileRegistry(fromBinary(FileDescriptorSetSchema, descriptorSet));
  return { Echo: reg.getService("demo.Echo"), Note: reg.getMessage("demo.Note") };
}

async function outcome(fn) {
  try {
    return { ok: await fn() };
  } catch (e) {
    const err = ConnectError.from(e);
    return { code: err.code, message: err.rawMessage };
  }
}

// Binary: a Connect client over any gRPC-Web transport.
export async function binaryCalls(s, transport) {
  const client = createClient(s.Echo, transport);
  const note = (text, n) => create(s.Note, { text, n });
  const res = {};
  res.unary = await outcome(async () => {
    const r = await client.unary(note("hello from the web", 5));
    return { text: r.text, n: r.n };
  });
  res.stream = await outcome(async () => {
    const got = [];
    for await (const m of client.repeat(note("streamed", 2), { headers: { "x-repeat": "4" } })) got.push(m.text);
    return got;
  });
  res.waf = await outcome(() => client.unary(note(ATTACK, 1)).then((r) => r.text));
  res.origin_error = await outcome(async () => {
    const got = [];
    const headers = { "x-repeat": "1", "x-fail-code": "5", "x-fail-message": encodeURIComponent(REASON) };
    for await (const m of client.repeat(note("then fail", 1), { headers })) got.push(m.text);
    return got;
  });
  return res;
}

// Text: the grpc-web library, base64 both ways.
export async function textCalls(s, grpcWeb, edge) {
  const client = new grpcWeb.GrpcWebClientBase({ format: "text" });
  const ser = (m) => toBinary(s.Note, m);
  const de = (b) => fromBinary(s.Note, b);
  const unary = new grpcWeb.MethodDescriptor("/demo.Echo/Unary", "unary", Object, Object, ser, de);
  const repeat = new grpcWeb.MethodDescriptor("/demo.Echo/Repeat", "server_streaming", Object, Object, ser, de);
  const note = (text, n) => create(s.Note, { text, n });
  const call = (text) =>
    new Promise((resolve) =>
      client.rpcCall(edge + "/demo.Echo/Unary", note(text, 6), {}, unary, (err, r) =>
        resolve(err ? { code: err.code, message: err.message } : { ok: { text: r.text, n: r.n } }),
      ),
    );
  const stream = (md) =>
    new Promise((resolve) => {
      const got = [];
      const st = client.serverStreaming(edge + "/demo.Echo/Repeat", note("streamed", 2), md, repeat);
      st.on("data", (m) => got.push(m.text));
      st.on("error", (err) => resolve({ code: err.code, message: err.message, got }));
      st.on("end", () => resolve({ ok: got }));
    });
  const res = {};
  res.unary = await call("hello in text mode");
  res.stream = await stream({ "x-repeat": "4" });
  res.waf = await call(ATTACK);
  res.origin_error = await stream({ "x-repeat": "1", "x-fail-code": "5", "x-fail-message": encodeURIComponent(REASON) });
  return res;
}

// One unary gRPC call with grpc-js (@grpc/grpc-js on Node) over TLS, for the bot plugin's client-stack
// tests: raw bytes in and out, so no generated code is needed.
//
//   node grpc_js_client.js ADDR CA_PEM AUTHORITY METHOD [USER_AGENT]
//
// Prints the call's status code; exit status 0 when the call got a gRPC status, 1 otherwise.
'use strict';
const fs = require('fs');
const grpc = require('@grpc/grpc-js');

const [addr, caPath, authority, method, ua] = process.argv.slice(2);
const options = {
  'grpc.ssl_target_name_override': 'example.com',
  'grpc.default_authority': authority,
};
if (ua) options['grpc.primary_user_agent'] = ua;
const client = new grpc.Client(addr, grpc.credentials.createSsl(fs.readFileSync(caPath)), options);
const id = (b) => b;
client.makeUnaryRequest(method, id, id, Buffer.alloc(0), new grpc.Metadata(),
  { deadline: Date.now() + 10000 }, (err) => {
    console.log(err ? err.code : 0);
    client.close();
    process.exit(err && err.code === undefined ? 1 : 0);
  });

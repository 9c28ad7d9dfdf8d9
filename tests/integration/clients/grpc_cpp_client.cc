// One unary gRPC call with the C++ library (libgrpc++, gRPC C-core underneath) over TLS, for the bot
// plugin's client-stack tests: a GenericStub sends raw bytes, so no generated code is needed.
//
//   grpc_cpp_client ADDR CA_PEM AUTHORITY METHOD [USER_AGENT]
//
// Prints the call's status code; exit status 0 when the call got a gRPC status, 1 on bad arguments.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>

int main(int argc, char **argv)
{
    if (argc < 5) {
        std::cerr << "usage: grpc_cpp_client ADDR CA_PEM AUTHORITY METHOD [USER_AGENT]\n";
        return 1;
    }
    std::ifstream f(argv[2]);
    std::stringstream pem;
    pem << f.rdbuf();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.str();
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("example.com");
    args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, argv[3]);
    if (argc > 5) args.SetString(GRPC_ARG_PRIMARY_USER_AGENT_STRING, argv[5]);
    auto channel = grpc::CreateCustomChannel(argv[1], grpc::SslCredentials(ssl), args);
    grpc::GenericStub stub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::ByteBuffer request, response;
    grpc::Slice empty("", 0);
    request = grpc::ByteBuffer(&empty, 1);
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    grpc::Status status;
    stub.UnaryCall(&ctx, argv[4], grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
        std::lock_guard<std::mutex> lock(mu);
        status = s;
        done = true;
        cv.notify_one();
    });
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
    std::cout << status.error_code() << "\n";
    return 0;
}

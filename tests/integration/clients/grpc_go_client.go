// One unary gRPC call with grpc-go over TLS, for the bot plugin's client-stack tests: the request and
// response are raw bytes (a codec that passes them through), so no generated code is needed.
//
//	grpc_go_client -addr 127.0.0.1:8443 -ca ca.pem -authority example.com -method /demo.Echo/Unary [-ua UA]
//
// Exit status 0 when the call got any gRPC status (printed), 1 when it could not be made.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io/ioutil"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

type raw struct{}

func (raw) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (raw) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (raw) Name() string { return "proto" }

func main() {
	addr := flag.String("addr", "", "edge address host:port")
	ca := flag.String("ca", "", "CA certificate (PEM)")
	authority := flag.String("authority", "example.com", "host for :authority and the TLS server name")
	method := flag.String("method", "/demo.Echo/Unary", "full method name")
	ua := flag.String("ua", "", "user agent set by the application (grpc-go appends its own)")
	timeout := flag.Duration("timeout", 10*time.Second, "call deadline")
	flag.Parse()
	pem, err := ioutil.ReadFile(*ca)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	// The target names the authority (grpc-go sends it as :authority and SNI); the dialer goes to addr.
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool})
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", *addr)
		})}
	if *ua != "" {
		opts = append(opts, grpc.WithUserAgent(*ua))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	_, port, err := net.SplitHostPort(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	conn, err := grpc.DialContext(ctx, "passthrough:///"+net.JoinHostPort(*authority, port), opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	in, out := []byte{}, []byte{}
	err = conn.Invoke(ctx, *method, &in, &out, grpc.ForceCodec(raw{}))
	fmt.Println(status.Code(err))
}

// One HTTP/2 GET with Go's net/http over TLS, for the bot plugin's client-stack tests: the client Go
// programs use when they do not use grpc-go (connect-go, plain REST), sharing Go's TLS with grpc-go.
//
//	go_http_client -addr 127.0.0.1:8443 -ca ca.pem -authority example.com -path /x [-ua UA]
//
// Prints the HTTP status; exit status 0 when a response came, 1 otherwise.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := flag.String("addr", "", "edge address host:port")
	ca := flag.String("ca", "", "CA certificate (PEM)")
	authority := flag.String("authority", "example.com", "host for :authority and the TLS server name")
	path := flag.String("path", "/", "request path")
	ua := flag.String("ua", "", "User-Agent (default: Go's own)")
	timeout := flag.Duration("timeout", 10*time.Second, "request deadline")
	flag.Parse()
	pem, err := ioutil.ReadFile(*ca)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, *addr)
		},
	}
	_, port, err := net.SplitHostPort(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	req, err := http.NewRequest("GET", "https://"+net.JoinHostPort(*authority, port)+*path, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *ua != "" {
		req.Header.Set("User-Agent", *ua)
	}
	client := &http.Client{Transport: tr, Timeout: *timeout}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	io.Copy(ioutil.Discard, resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Proto, resp.StatusCode)
}

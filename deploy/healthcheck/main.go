// Command healthcheck exits 0 when the acu service of its container answers
// GET /readyz with 200 (it does its work), and 1 otherwise (it is down, or
// still waits for its store or its thresholds). It is the HEALTHCHECK of the acu
// image (deploy/Dockerfile), whose distroless base has no shell, curl or
// wget. The address is the service's: ACU_HTTP (a wildcard host becomes
// 127.0.0.1), else acu's default 127.0.0.1:8080; an argument overrides it
// with a full URL.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	url := ""
	if len(os.Args) > 1 {
		url = os.Args[1]
	} else {
		var err error
		if url, err = healthURL(os.Getenv("ACU_HTTP")); err != nil {
			fmt.Fprintln(os.Stderr, "healthcheck:", err)
			os.Exit(1)
		}
	}
	if err := check(url, 3*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

// healthURL is the /readyz URL of a service listening on listen (the
// --http / ACU_HTTP value).
func healthURL(listen string) (string, error) {
	if listen == "" {
		listen = "127.0.0.1:8080" // acu's default: an empty ACU_HTTP is not applied
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("ACU_HTTP=%q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/readyz", nil
}

func check(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

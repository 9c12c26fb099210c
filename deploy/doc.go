// Package deploy holds what runs acu on real clusters: the container image
// (Dockerfile), a compose file with every server (compose/compose.yaml),
// the Kubernetes manifests of the acu services (k8s/), and a test that
// parses them and cross-checks them against the acu flags. See README.md.
package deploy

// Package deploy holds no code: it is the home of scim-agent's packaging
// and deployment files (the Kubernetes manifests, the systemd unit, the
// Prometheus rules and the Grafana dashboard under this directory, and
// the repository's Dockerfile) and of the tests that check them against
// the agent itself: every metric a rule or a panel names is one the agent
// registers, every config.yaml they carry is one the agent accepts, every
// secret comes from a Secret or an environment file.
package deploy

// Package integration holds tests of the ingest consumers against a real
// Apache Kafka broker. They are behind the build tag "integration" and need
// ACU_IT_KAFKA=host:port; see README.md.
package integration

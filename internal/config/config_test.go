package config_test

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/acu-patrol/acu/internal/config"
)

func parse(args []string, env map[string]string) (config.Config, error) {
	var c config.Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Register(fs)
	if err := config.Parse(fs, args, func(k string) string { return env[k] }); err != nil {
		return c, err
	}
	return c, c.Validate()
}

func TestDefaultsPointAtAcuDev(t *testing.T) {
	c, err := parse(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka != "127.0.0.1:9092" || c.Etcd != "127.0.0.1:2379" || c.Temporal != "127.0.0.1:7233" ||
		c.Namespace != "default" || c.HTTP != "127.0.0.1:8080" || c.EtcdPrefix != "/acu/" ||
		c.FollowUpAfter != 30*time.Minute || c.PatrolURL != "http://127.0.0.1:8080/patrol" {
		t.Fatalf("defaults %+v", c)
	}
}

func TestFlagsAndEnvironment(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(config.Config) bool
		wantErr string
	}{
		{"env applies", nil, map[string]string{"ACU_KAFKA": "k1:9092,k2:9092", "ACU_FOLLOW_UP_AFTER": "1m"},
			func(c config.Config) bool { return len(c.KafkaBrokers()) == 2 && c.FollowUpAfter == time.Minute }, ""},
		{"flag wins over env", []string{"--kafka", "flag:1"}, map[string]string{"ACU_KAFKA": "env:1"},
			func(c config.Config) bool { return c.Kafka == "flag:1" }, ""},
		{"bad env duration names the variable", nil, map[string]string{"ACU_FOLLOW_UP_AFTER": "soon"}, nil, "ACU_FOLLOW_UP_AFTER"},
		{"negative follow-up", []string{"--follow-up-after", "-1s"}, nil, nil, "--follow-up-after (ACU_FOLLOW_UP_AFTER)"},
		{"prefix must end with slash", []string{"--etcd-prefix", "/acu"}, nil, nil, "etcd-prefix"},
		{"unsupported store", []string{"--store", "postgres://x"}, nil, nil, "unsupported store"},
		{"patrol url", []string{"--patrol-url", "ftp://x"}, nil, nil, "patrol-url"},
		{"log level", nil, map[string]string{"ACU_LOG_LEVEL": "loud"}, nil, "log-level"},
		{"no brokers", []string{"--kafka", " , "}, nil, nil, "no broker"},
		{"instance id from env", nil, map[string]string{"ACU_KAFKA_INSTANCE_ID": "ingest-0.acu"},
			func(c config.Config) bool { return c.KafkaInstanceID == "ingest-0.acu" }, ""},
		{"instance id Kafka refuses", []string{"--kafka-instance-id", "ingest 0"}, nil, nil, "--kafka-instance-id (ACU_KAFKA_INSTANCE_ID)"},
		{"settle zero allowed", []string{"--follow-up-settle", "0s"}, nil,
			func(c config.Config) bool { return c.FollowUpSettle == 0 }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parse(tc.args, tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Fatalf("config %+v", c)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	if got := config.EnvName("follow-up-after"); got != "ACU_FOLLOW_UP_AFTER" {
		t.Fatal(got)
	}
}

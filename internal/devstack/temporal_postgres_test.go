package devstack

import (
	"context"
	"fmt"
	"os"
	"path"
	"slices"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	sdkclient "go.temporal.io/sdk/client"
	sdktemporal "go.temporal.io/sdk/temporal"
	serverlog "go.temporal.io/server/common/log"
	dbschemas "go.temporal.io/server/schema"
)

func TestTemporalPendingSchemaVersions(t *testing.T) {
	for _, schemaName := range []string{temporalPostgresSchema, temporalPostgresVisibilitySchema} {
		all, err := temporalPendingSchemaVersions(dbschemas.Assets(), schemaName, [2]int{0, 0})
		if err != nil {
			t.Fatal(err)
		}
		if len(all) < 10 || path.Base(all[0]) != "v1.0" {
			t.Fatalf("%s from 0.0: %v, want v1.0 first and at least 10 versions", schemaName, all)
		}
		last, err := temporalParseSchemaVersion(path.Base(all[len(all)-1])[1:])
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name  string
			have  [2]int
			first string // "" for none pending
		}{
			{"new database", [2]int{0, 0}, "v1.0"},
			{"v1.10 after v1.9, not after v1.1", [2]int{1, 9}, "v1.10"},
			{"up to date", last, ""},
			{"newer than this server", [2]int{last[0] + 1, 0}, ""},
		} {
			t.Run(schemaName+"/"+tc.name, func(t *testing.T) {
				got, err := temporalPendingSchemaVersions(dbschemas.Assets(), schemaName, tc.have)
				if err != nil {
					t.Fatal(err)
				}
				if tc.first == "" {
					if len(got) != 0 {
						t.Errorf("pending = %v, want none", got)
					}
					return
				}
				if len(got) == 0 || path.Base(got[0]) != tc.first {
					t.Errorf("pending = %v, want %s first", got, tc.first)
				}
				if i := slices.Index(all, got[0]); !slices.Equal(all[i:], got) {
					t.Errorf("pending = %v, want the tail of %v", got, all)
				}
			})
		}
	}
}

// TestTemporalPostgres runs the server on PostgreSQL twice over the same
// databases. It needs a PostgreSQL server that trusts the postgres role
// from loopback (deploy/local/postgres.sh start), named by
// ACU_TEST_POSTGRES=host:port.
func TestTemporalPostgres(t *testing.T) {
	addr := os.Getenv("ACU_TEST_POSTGRES")
	if addr == "" {
		t.Skip("set ACU_TEST_POSTGRES=host:port of a PostgreSQL server (deploy/local/postgres.sh start)")
	}
	pg := &TemporalPostgres{
		Addr:               addr,
		Database:           fmt.Sprintf("acu_test_%d", os.Getpid()),
		VisibilityDatabase: fmt.Sprintf("acu_test_%d_visibility", os.Getpid()),
	}
	t.Cleanup(func() {
		server := pg.withDefaults().sqlConfig("")
		admin, err := temporalOpenAdminDB(server, serverlog.NewNoopLogger())
		if err != nil {
			t.Errorf("dropping the test databases: %v", err)
			return
		}
		defer admin.Close()
		for _, db := range []string{pg.Database, pg.VisibilityDatabase} {
			if err := admin.DropDatabase(db); err != nil {
				t.Errorf("dropping %s: %v", db, err)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := TemporalOptions{
		Postgres:         pg,
		HistoryShards:    4,
		Retention:        72 * time.Hour,
		SearchAttributes: testSearchAttrs,
	}

	first := testStartTemporal(t, opts)
	c := testDial(t, ctx, first, "default")
	run, err := c.ExecuteWorkflow(ctx, sdkclient.StartWorkflowOptions{
		ID:                    "persisted",
		TaskQueue:             "nobody-polls-this",
		TypedSearchAttributes: sdktemporal.NewSearchAttributes(testStudentIDKey.ValueSet("pg")),
	}, "SomeWorkflow")
	if err != nil {
		t.Fatalf("ExecuteWorkflow: %v", err)
	}
	testEventually(t, ctx, "workflow listed by its search attribute", func() error {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: "default", Query: `StudentId = "pg"`,
		})
		if err == nil && len(resp.GetExecutions()) != 1 {
			err = fmt.Errorf("%d workflows listed, want 1", len(resp.GetExecutions()))
		}
		return err
	})
	c.Close()
	if err := first.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	// The second start finds the schema up to date and the namespace there.
	second := testStartTemporal(t, opts)
	c = testDial(t, ctx, second, "default")
	defer c.Close()
	desc, err := c.DescribeWorkflowExecution(ctx, "persisted", run.GetRunID())
	if err != nil {
		t.Fatalf("describe persisted workflow: %v", err)
	}
	if got := desc.GetWorkflowExecutionInfo().GetStatus(); got != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Errorf("persisted workflow status = %s, want RUNNING", got)
	}
	ns, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
	if err != nil {
		t.Fatalf("DescribeNamespace: %v", err)
	}
	if got := ns.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration(); got != 72*time.Hour {
		t.Errorf("retention = %v, want 72h", got)
	}
}

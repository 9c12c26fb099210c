package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	sdkclient "go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	sdktemporal "go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

var (
	testStudentIDKey = sdktemporal.NewSearchAttributeKeyKeyword("StudentId")
	testMetricKey    = sdktemporal.NewSearchAttributeKeyFloat64("Metric")
	testSearchAttrs  = map[string]enumspb.IndexedValueType{
		"StudentId": enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		"Metric":    enumspb.INDEXED_VALUE_TYPE_DOUBLE,
	}
)

// testTemporalGreet upserts the StudentId search attribute and returns a
// greeting.
func testTemporalGreet(ctx workflow.Context, studentID string) (string, error) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, testStudentIDKey.ValueSet(studentID)); err != nil {
		return "", fmt.Errorf("upsert search attributes: %w", err)
	}
	return "hello " + studentID, nil
}

// testTemporalLogger logs Warn and above to stderr. (t.Log cannot be used:
// server goroutines may still log after the test has finished.)
func testTemporalLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// testStartTemporal starts the embedded server on free loopback ports and
// registers a cleanup that stops it.
func testStartTemporal(t *testing.T, o TemporalOptions) *Temporal {
	t.Helper()
	var err error
	if o.FrontendAddr == "" {
		if o.FrontendAddr, err = FreeLoopbackAddr(); err != nil {
			t.Fatal(err)
		}
	}
	if o.Logger == nil {
		o.Logger = testTemporalLogger()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	tmp, err := StartTemporal(ctx, o)
	if err != nil {
		t.Fatalf("StartTemporal: %v", err)
	}
	t.Logf("Temporal started in %v (frontend %s, UI %q)", time.Since(start).Round(time.Millisecond), tmp.FrontendAddr(), tmp.UIURL())
	t.Cleanup(func() {
		start := time.Now()
		if err := tmp.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
		t.Logf("Temporal stopped in %v", time.Since(start).Round(time.Millisecond))
	})
	return tmp
}

// testDial connects an SDK client to the embedded server; the caller closes it.
func testDial(t *testing.T, ctx context.Context, tmp *Temporal, namespace string) sdkclient.Client {
	t.Helper()
	c, err := sdkclient.DialContext(ctx, sdkclient.Options{
		HostPort:  tmp.FrontendAddr(),
		Namespace: namespace,
		Logger:    sdklog.NewStructuredLogger(testTemporalLogger()),
	})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

// testEventually calls check every 100ms until it returns nil or ctx ends.
func testEventually(t *testing.T, ctx context.Context, what string, check func() error) {
	t.Helper()
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v (last error: %v)", what, ctx.Err(), err)
		case <-ticker.C:
		}
	}
}

// testHTTPGet fetches url and returns status, content type and body.
func testHTTPGet(ctx context.Context, url string) (int, string, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), body, err
}

func TestTemporalWorkflowSearchAttributesAndUI(t *testing.T) {
	uiAddr, err := FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	tmp := testStartTemporal(t, TemporalOptions{
		UIAddr:           uiAddr,
		Namespace:        "default",
		SearchAttributes: testSearchAttrs,
	})
	if want := "http://" + uiAddr; tmp.UIURL() != want {
		t.Errorf("UIURL() = %q, want %q", tmp.UIURL(), want)
	}
	// Once StartTemporal returns, the UI's API answers: an operator's first
	// page is no 503 (the UI's own connection to the frontend in back-off).
	if resp, err := http.Get(tmp.UIURL() + "/api/v1/namespaces/default"); err != nil {
		t.Errorf("the UI's first API request: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("the UI's first API request, right after start: %s", resp.Status)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := testDial(t, ctx, tmp, "default")
	defer c.Close()

	const taskQueue = "devstack-temporal-test"
	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflow(testTemporalGreet)
	if err := w.Start(); err != nil {
		t.Fatalf("worker start: %v", err)
	}
	defer w.Stop()

	workflowID := fmt.Sprintf("devstack-test-%d", time.Now().UnixNano())
	run, err := c.ExecuteWorkflow(ctx, sdkclient.StartWorkflowOptions{
		ID:                    workflowID,
		TaskQueue:             taskQueue,
		TypedSearchAttributes: sdktemporal.NewSearchAttributes(testMetricKey.ValueSet(1.5)),
	}, testTemporalGreet, "x")
	if err != nil {
		t.Fatalf("ExecuteWorkflow: %v", err)
	}

	// (a) The workflow completes.
	var greeting string
	if err := run.Get(ctx, &greeting); err != nil {
		t.Fatalf("workflow result: %v", err)
	}
	if greeting != "hello x" {
		t.Errorf("workflow result = %q, want %q", greeting, "hello x")
	}

	// (b) A visibility query on the upserted search attribute finds it.
	testEventually(t, ctx, "ListWorkflow StudentId = \"x\"", func() error {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: "default",
			Query:     `StudentId = "x" AND Metric > 1`,
		})
		if err != nil {
			return err
		}
		for _, e := range resp.GetExecutions() {
			if e.GetExecution().GetWorkflowId() != workflowID {
				continue
			}
			if e.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
				return fmt.Errorf("visibility status %s", e.GetStatus())
			}
			return nil
		}
		return errors.New("workflow not found by query")
	})
	t.Logf("ListWorkflow `StudentId = \"x\"` found %s", workflowID)

	// (c) The UI's HTTP API lists it.
	testEventually(t, ctx, "UI API lists the workflow", func() error {
		status, ctype, body, err := testHTTPGet(ctx, tmp.UIURL()+"/api/v1/namespaces/default/workflows")
		if err != nil {
			return err
		}
		if status != http.StatusOK || !strings.Contains(ctype, "json") {
			return fmt.Errorf("status %d, content type %q: %.200s", status, ctype, body)
		}
		var list struct {
			Executions []struct {
				Execution struct {
					WorkflowID string `json:"workflowId"`
				} `json:"execution"`
			} `json:"executions"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return fmt.Errorf("decode %.200s: %w", body, err)
		}
		for _, e := range list.Executions {
			if e.Execution.WorkflowID == workflowID {
				return nil
			}
		}
		return fmt.Errorf("workflow not in UI API response: %.300s", body)
	})
	t.Logf("UI API %s/api/v1/namespaces/default/workflows lists %s", tmp.UIURL(), workflowID)

	// The UI assets are embedded: "/" serves the HTML app.
	status, ctype, body, err := testHTTPGet(ctx, tmp.UIURL()+"/")
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	if status != http.StatusOK || !strings.Contains(ctype, "text/html") ||
		!strings.Contains(strings.ToLower(string(body)), "<html") {
		t.Fatalf("GET / = %d %q: %.300s", status, ctype, body)
	}
	t.Logf("UI GET / = %d %s (%d bytes of HTML)", status, ctype, len(body))
	asset := regexp.MustCompile(`/_app/[^"'\s]+\.js`).Find(body)
	if asset == nil {
		t.Fatalf("no /_app/*.js asset referenced by the UI HTML: %.500s", body)
	}
	if status, ctype, body, err = testHTTPGet(ctx, tmp.UIURL()+string(asset)); err != nil || status != http.StatusOK {
		t.Fatalf("GET %s = %d %v: %.200s", asset, status, err, body)
	}
	t.Logf("UI GET %s = %d %s (%d bytes)", asset, status, ctype, len(body))

	// Schedules work (later work relies on them): a paused schedule,
	// triggered by hand, starts a workflow that our worker completes.
	sched, err := c.ScheduleClient().Create(ctx, sdkclient.ScheduleOptions{
		ID:     "devstack-test-schedule",
		Spec:   sdkclient.ScheduleSpec{Intervals: []sdkclient.ScheduleIntervalSpec{{Every: time.Hour}}},
		Paused: true,
		Action: &sdkclient.ScheduleWorkflowAction{
			ID:        "devstack-test-scheduled",
			Workflow:  testTemporalGreet,
			Args:      []any{"y"},
			TaskQueue: taskQueue,
		},
	})
	if err != nil {
		t.Fatalf("create schedule: %v", err)
	}
	if err := sched.Trigger(ctx, sdkclient.ScheduleTriggerOptions{}); err != nil {
		t.Fatalf("trigger schedule: %v", err)
	}
	var scheduled sdkclient.WorkflowRun
	testEventually(t, ctx, "scheduled workflow to start", func() error {
		desc, err := sched.Describe(ctx)
		if err != nil {
			return err
		}
		actions := desc.Info.RecentActions
		if len(actions) == 0 {
			return errors.New("no recent schedule actions")
		}
		started := actions[0].StartWorkflowResult
		scheduled = c.GetWorkflow(ctx, started.WorkflowID, started.FirstExecutionRunID)
		return nil
	})
	if err := scheduled.Get(ctx, &greeting); err != nil || greeting != "hello y" {
		t.Fatalf("scheduled workflow result = %q, %v", greeting, err)
	}
	t.Logf("schedule triggered workflow %s: %q", scheduled.GetID(), greeting)
	if err := sched.Delete(ctx); err != nil {
		t.Errorf("delete schedule: %v", err)
	}
}

func TestTemporalDataDirPersists(t *testing.T) {
	dir := t.TempDir()
	const namespace = "persist"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// First run creates the database with one search attribute.
	first := testStartTemporal(t, TemporalOptions{
		Namespace:        namespace,
		DataDir:          dir,
		SearchAttributes: map[string]enumspb.IndexedValueType{"StudentId": enumspb.INDEXED_VALUE_TYPE_KEYWORD},
	})
	c := testDial(t, ctx, first, namespace)
	run, err := c.ExecuteWorkflow(ctx, sdkclient.StartWorkflowOptions{
		ID:                    "persisted",
		TaskQueue:             "nobody-polls-this",
		TypedSearchAttributes: sdktemporal.NewSearchAttributes(testStudentIDKey.ValueSet("p")),
	}, "SomeWorkflow")
	if err != nil {
		t.Fatalf("ExecuteWorkflow: %v", err)
	}
	c.Close()
	if err := first.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	// Second run reuses the file and adds a search attribute to the existing
	// namespace (the operator-API path).
	second := testStartTemporal(t, TemporalOptions{
		Namespace: namespace,
		DataDir:   dir,
		SearchAttributes: map[string]enumspb.IndexedValueType{
			"StudentId": enumspb.INDEXED_VALUE_TYPE_KEYWORD,
			"Metric":    enumspb.INDEXED_VALUE_TYPE_DOUBLE,
		},
	})
	c = testDial(t, ctx, second, namespace)
	desc, err := c.DescribeWorkflowExecution(ctx, "persisted", run.GetRunID())
	if err != nil {
		t.Fatalf("describe persisted workflow: %v", err)
	}
	if got := desc.GetWorkflowExecutionInfo().GetStatus(); got != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Errorf("persisted workflow status = %s, want RUNNING", got)
	}
	sas, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		t.Fatalf("ListSearchAttributes: %v", err)
	}
	for name, typ := range map[string]enumspb.IndexedValueType{
		"StudentId": enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		"Metric":    enumspb.INDEXED_VALUE_TYPE_DOUBLE,
	} {
		if got := sas.GetCustomAttributes()[name]; got != typ {
			t.Errorf("search attribute %s = %s, want %s", name, got, typ)
		}
	}
	c.Close()
	if err := second.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	// Changing the type of an existing attribute is refused.
	frontendAddr, err := FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	third, err := StartTemporal(ctx, TemporalOptions{
		FrontendAddr:     frontendAddr,
		Namespace:        namespace,
		DataDir:          dir,
		SearchAttributes: map[string]enumspb.IndexedValueType{"StudentId": enumspb.INDEXED_VALUE_TYPE_INT},
		Logger:           testTemporalLogger(),
	})
	if err == nil {
		_ = third.Stop()
		t.Fatalf("StartTemporal with a conflicting search attribute type succeeded")
	}
	t.Logf("conflicting search attribute type refused: %v", err)
}

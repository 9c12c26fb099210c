package devstack

import (
	"context"
	"log/slog"
	"strings"

	serverlog "go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
)

// temporalLevelSilent is above every level the server uses; setting a
// temporalMinLevelHandler's level to it drops all records.
const temporalLevelSilent = slog.Level(100)

// temporalNexusHTTPWarning starts a warning the server logs on every start
// because we leave its HTTP API (only needed for Nexus) disabled.
const temporalNexusHTTPWarning = "HTTP API port has not been set"

// temporalMinLevelHandler is a slog.Handler that drops records below a
// minimum level before handing them to the wrapped handler. It lets us keep
// the caller's handler (format, destination) while silencing the very chatty
// Temporal server and SDK below Warn, and silencing them completely while
// and after they shut down.
type temporalMinLevelHandler struct {
	min  slog.Leveler
	next slog.Handler
}

// newTemporalLogger returns a logger writing to l's handler, restricted to
// records at or above the returned level (initially Warn). A nil l yields a
// logger that discards everything.
func newTemporalLogger(l *slog.Logger) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	if l == nil {
		return slog.New(slog.DiscardHandler), level
	}
	return slog.New(&temporalMinLevelHandler{min: level, next: l.Handler()}), level
}

// Enabled implements slog.Handler.
func (h *temporalMinLevelHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= h.min.Level() && h.next.Enabled(ctx, level)
}

// Handle implements slog.Handler.
func (h *temporalMinLevelHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.next.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *temporalMinLevelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &temporalMinLevelHandler{min: h.min, next: h.next.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler.
func (h *temporalMinLevelHandler) WithGroup(name string) slog.Handler {
	return &temporalMinLevelHandler{min: h.min, next: h.next.WithGroup(name)}
}

// temporalServerLogger adapts a *slog.Logger to the Temporal server's log.Logger
// interface. Level filtering is left to the slog handler.
//
// The server's DPanic, Panic and Fatal levels are logged as errors and never
// panic or exit: in an embedded dev server a misbehaving component must not
// take the whole process down.
type temporalServerLogger struct {
	l *slog.Logger
}

var (
	_ serverlog.Logger     = temporalServerLogger{}
	_ serverlog.WithLogger = temporalServerLogger{}
)

// Debug implements log.Logger.
func (s temporalServerLogger) Debug(msg string, tags ...tag.Tag) { s.log(slog.LevelDebug, msg, tags) }

// Info implements log.Logger.
func (s temporalServerLogger) Info(msg string, tags ...tag.Tag) { s.log(slog.LevelInfo, msg, tags) }

// Warn implements log.Logger.
func (s temporalServerLogger) Warn(msg string, tags ...tag.Tag) { s.log(slog.LevelWarn, msg, tags) }

// Error implements log.Logger.
func (s temporalServerLogger) Error(msg string, tags ...tag.Tag) { s.log(slog.LevelError, msg, tags) }

// DPanic implements log.Logger; it logs at Error level.
func (s temporalServerLogger) DPanic(msg string, tags ...tag.Tag) { s.log(slog.LevelError, msg, tags) }

// Panic implements log.Logger; it logs at Error level and does not panic.
func (s temporalServerLogger) Panic(msg string, tags ...tag.Tag) { s.log(slog.LevelError, msg, tags) }

// Fatal implements log.Logger; it logs at Error level and does not exit.
func (s temporalServerLogger) Fatal(msg string, tags ...tag.Tag) { s.log(slog.LevelError, msg, tags) }

// With implements log.WithLogger so that the server's tagged child loggers
// are built once instead of re-prepending tags on every call.
func (s temporalServerLogger) With(tags ...tag.Tag) serverlog.Logger {
	return temporalServerLogger{l: slog.New(s.l.Handler().WithAttrs(temporalTagsToAttrs(tags)))}
}

func (s temporalServerLogger) log(level slog.Level, msg string, tags []tag.Tag) {
	ctx := context.Background()
	if !s.l.Enabled(ctx, level) {
		return // skip converting tags for records that would be dropped
	}
	if level == slog.LevelWarn && strings.HasPrefix(msg, temporalNexusHTTPWarning) {
		return // expected: we run without the frontend HTTP API
	}
	s.l.LogAttrs(ctx, level, msg, temporalTagsToAttrs(tags)...)
}

func temporalTagsToAttrs(tags []tag.Tag) []slog.Attr {
	attrs := make([]slog.Attr, 0, len(tags))
	for _, t := range tags {
		attrs = append(attrs, slog.Any(t.Key(), t.Value()))
	}
	return attrs
}

// Package logging builds the agent's zap logger from the log section of
// the config: JSON lines for log pipelines or a console format for people.
//
// Every JSON line has ts (RFC 3339 with milliseconds, UTC), level, msg and
// the message's own fields; the README's log table is the contract.
package logging

import (
	"fmt"
	"io"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a logger writing to w (stdout when nil) at level ("debug",
// "info", "warn", "error") in format ("json" or "console").
func New(level, format string, w io.Writer) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	enc := zapcore.EncoderConfig{
		TimeKey:        "ts",
		LevelKey:       "level",
		MessageKey:     "msg",
		NameKey:        "logger",
		StacktraceKey:  "",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     utcMillis,
		EncodeDuration: zapcore.MillisDurationEncoder,
	}
	var encoder zapcore.Encoder
	switch format {
	case "json", "":
		encoder = zapcore.NewJSONEncoder(enc)
	case "console":
		enc.EncodeLevel = zapcore.CapitalLevelEncoder
		encoder = zapcore.NewConsoleEncoder(enc)
	default:
		return nil, fmt.Errorf("log.format: %q is not one of json, console", format)
	}
	if w == nil {
		w = os.Stdout
	}
	core := zapcore.NewCore(encoder, zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(core), nil
}

// millis writes a time in RFC 3339 with milliseconds straight into the
// line's buffer (zap's layout encoder formats without a string of its
// own: one line is written for every SCIM request).
var millis = zapcore.TimeEncoderOfLayout("2006-01-02T15:04:05.000Z07:00")

// utcMillis writes the time in UTC, as "2026-12-02T18:20:01.234Z".
func utcMillis(t time.Time, e zapcore.PrimitiveArrayEncoder) { millis(t.UTC(), e) }

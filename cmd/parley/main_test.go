package main

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"version"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run(version) = %v, want nil", err)
	}
	want := "parley " + version + " (" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if got := stdout.String(); got != want {
		t.Errorf("version output = %q, want %q", got, want)
	}
	if stderr.Len() != 0 {
		t.Errorf("version wrote to stderr: %q", stderr.String())
	}
	if code := exitCode(err); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
}

func TestVersionRejectsArguments(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"version", "extra"}, &stdout, &stderr)
	if !errors.Is(err, errUsage) {
		t.Fatalf("run(version extra) = %v, want an error wrapping errUsage", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", stdout.String())
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"help", "-h", "--help"} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), []string{arg}, &stdout, &stderr); err != nil {
			t.Fatalf("run(%s) = %v, want nil", arg, err)
		}
		for _, c := range commands() {
			if !strings.Contains(stdout.String(), "  "+c.name+" ") {
				t.Errorf("run(%s): usage does not list %q:\n%s", arg, c.name, stdout.String())
			}
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"frobnicate"}, &stdout, &stderr)
	if !errors.Is(err, errUsage) {
		t.Fatalf("run(frobnicate) = %v, want an error wrapping errUsage", err)
	}
	if !strings.Contains(err.Error(), `"frobnicate"`) {
		t.Errorf("error %q does not name the command", err)
	}
	if code := exitCode(err); code != 2 {
		t.Errorf("exit code = %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "Usage: parley") {
		t.Errorf("stderr does not show usage: %q", stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", stdout.String())
	}
}

func TestNoCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), nil, &stdout, &stderr)
	if !errors.Is(err, errUsage) || exitCode(err) != 2 {
		t.Fatalf("run() = %v (exit %d), want a usage error with exit 2", err, exitCode(err))
	}
}

func TestCommandsMatchDesign(t *testing.T) {
	// The subcommands DESIGN.md gives cmd/parley, in order, then config
	// (issue 17: config print).
	want := []string{"init", "run", "relay", "id", "backup", "restore", "rotate-key", "bench", "version", "config"}
	var got []string
	for _, c := range commands() {
		got = append(got, c.name)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("commands = %q, want %q", got, want)
	}
}

func TestNotImplemented(t *testing.T) {
	tested := 0
	for _, c := range commands() {
		if c.run != nil {
			continue
		}
		tested++
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), []string{c.name, "--data-dir", t.TempDir()}, &stdout, &stderr)
			if !errors.Is(err, errNotImplemented) {
				t.Fatalf("run(%s) = %v, want an error wrapping errNotImplemented", c.name, err)
			}
			want := "parley " + c.name + ": not implemented yet (see README)"
			if err.Error() != want {
				t.Errorf("error = %q, want %q", err, want)
			}
			if code := exitCode(err); code != 2 {
				t.Errorf("exit code = %d, want 2", code)
			}
			if stdout.Len()+stderr.Len() != 0 {
				t.Errorf("wrote output: stdout %q, stderr %q", stdout.String(), stderr.String())
			}
		})
	}
	if tested == 0 {
		t.Fatal("no subcommand is unimplemented; delete this test or errNotImplemented")
	}
}

func TestExitCodeOtherError(t *testing.T) {
	if code := exitCode(errors.New("disk on fire")); code != 1 {
		t.Errorf("exitCode(other error) = %d, want 1", code)
	}
}

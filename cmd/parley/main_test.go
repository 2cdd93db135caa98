package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	want := "parley " + version + " (" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, &stdout, &stderr)
		if err != nil {
			t.Fatalf("run(%q) = %v, want nil", args, err)
		}
		if got := stdout.String(); got != want {
			t.Errorf("run(%q) output = %q, want %q", args, got, want)
		}
		if stderr.Len() != 0 {
			t.Errorf("run(%q) wrote to stderr: %q", args, stderr.String())
		}
		if code := exitCode(err); code != 0 {
			t.Errorf("exit code = %d, want 0", code)
		}
	}
}

func TestVersionRejectsArguments(t *testing.T) {
	for _, args := range [][]string{{"version", "extra"}, {"--version", "extra"}, {"version", "--short"}} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, &stdout, &stderr)
		if !errors.Is(err, errUsage) || exitCode(err) != 2 {
			t.Fatalf("run(%q) = %v, want a usage error (exit 2)", args, err)
		}
		if stdout.Len() != 0 {
			t.Errorf("run(%q): stdout = %q, want nothing", args, stdout.String())
		}
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"help", "-h", "-help", "--help"} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), []string{arg}, &stdout, &stderr); err != nil {
			t.Fatalf("run(%s) = %v, want nil", arg, err)
		}
		for _, c := range commands() {
			if !strings.Contains(stdout.String(), "  "+c.name+" ") {
				t.Errorf("run(%s): usage does not list %q:\n%s", arg, c.name, stdout.String())
			}
		}
		if strings.Contains(stdout.String(), "not implemented") {
			t.Errorf("usage lists a command that is not built:\n%s", stdout.String())
		}
		if stderr.Len() != 0 {
			t.Errorf("run(%s) wrote to stderr: %q", arg, stderr.String())
		}
	}
}

// TestCommandHelp: every command answers -h, -help, --help and `parley
// help <command>` with its usage on stdout, nothing on stderr, exit 0,
// and does nothing else.
func TestCommandHelp(t *testing.T) {
	t.Setenv(envDataDir, t.TempDir()) // nothing may touch it
	for _, c := range commands() {
		for _, args := range [][]string{{c.name, "-h"}, {c.name, "-help"}, {c.name, "--help"}, {"help", c.name}} {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), args, &stdout, &stderr)
			if err != nil || exitCode(err) != 0 {
				t.Fatalf("run(%q) = %v, want nil", args, err)
			}
			if !strings.HasPrefix(stdout.String(), "Usage: parley "+c.name) {
				t.Errorf("run(%q): stdout %q, want the usage", args, stdout.String())
			}
			if stderr.Len() != 0 {
				t.Errorf("run(%q) wrote to stderr: %q", args, stderr.String())
			}
		}
	}
	// Flags are listed where there are some.
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"id", "--help"}, &stdout, &bytes.Buffer{}); err != nil || !strings.Contains(stdout.String(), "-data-dir") {
		t.Errorf("parley id --help = %v:\n%s", err, stdout.String())
	}
	for _, args := range [][]string{{"help", "frobnicate"}, {"help", "run", "id"}, {"help", "--data-dir"}} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, &stdout, &stderr)
		if !errors.Is(err, errUsage) || exitCode(err) != 2 || stdout.Len() != 0 {
			t.Errorf("run(%q) = %v, stdout %q; want a usage error and no output", args, err, stdout.String())
		}
	}
}

// TestCommandBadFlag: a flag a command does not know, or a stray
// argument, is a usage error (exit 2) that names the command and its
// help; nothing goes to stdout, and nothing is printed on the way (main
// prints the error to stderr).
func TestCommandBadFlag(t *testing.T) {
	t.Setenv(envDataDir, t.TempDir())
	for _, c := range commands() {
		for _, args := range [][]string{{c.name, "--no-such-flag"}, {c.name, "stray"}} {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), args, &stdout, &stderr)
			if !errors.Is(err, errUsage) || exitCode(err) != 2 {
				t.Fatalf("run(%q) = %v, want a usage error (exit 2)", args, err)
			}
			if !strings.Contains(err.Error(), "parley "+c.name) || !strings.Contains(err.Error(), "--help") {
				t.Errorf("run(%q): error %q does not name the command and its help", args, err)
			}
			if stdout.Len()+stderr.Len() != 0 {
				t.Errorf("run(%q) printed: stdout %q, stderr %q", args, stdout.String(), stderr.String())
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
	if stdout.Len() != 0 || !strings.Contains(stderr.String(), "Usage: parley") {
		t.Errorf("stdout %q, stderr %q; want the usage on stderr only", stdout.String(), stderr.String())
	}
}

// TestCommandsMatchDesign: the commands are DESIGN.md's, in its order,
// less those not built yet (bench), which the help does not list.
func TestCommandsMatchDesign(t *testing.T) {
	// The subcommands DESIGN.md gives cmd/parley, in order, then config
	// (issue 17: config print).
	design := []string{"init", "run", "relay", "id", "backup", "restore", "rotate-key", "bench", "version", "config"}
	var got []string
	for _, c := range commands() {
		got = append(got, c.name)
	}
	want := slices.DeleteFunc(slices.Clone(design), func(n string) bool {
		return !slices.ContainsFunc(commands(), func(c command) bool { return c.name == n })
	})
	if len(got) == 0 || !slices.Equal(got, want) {
		t.Errorf("commands = %q, want DESIGN.md's in its order (%q)", got, want)
	}
	for _, c := range commands() {
		if c.run == nil {
			t.Errorf("command %s has nothing to run", c.name)
		}
	}
}

// TestREADMEAgreesWithHelp: every command the help lists is in the
// README, and every `parley <command>` the README names exists.
func TestREADMEAgreesWithHelp(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, c := range commands() {
		if !strings.Contains(readme, "`parley "+c.name) {
			t.Errorf("README does not mention `parley %s`", c.name)
		}
	}
	for _, m := range regexp.MustCompile("`parley ([a-z][a-z-]*)").FindAllStringSubmatch(readme, -1) {
		name := m[1]
		if name != "help" && !slices.ContainsFunc(commands(), func(c command) bool { return c.name == name }) {
			t.Errorf("README names `parley %s`, which the help does not list", name)
		}
	}
}

func TestExitCodeOtherError(t *testing.T) {
	if code := exitCode(errors.New("disk on fire")); code != 1 {
		t.Errorf("exitCode(other error) = %d, want 1", code)
	}
}

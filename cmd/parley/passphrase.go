package main

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// readPassphrase gets the passphrase of a maintenance command (backup,
// restore, init): from file when given (--passphrase-file or
// PARLEY_PASSPHRASE_FILE), else by prompting on the terminal, twice when
// confirm. The caller wipes the result.
func readPassphrase(file string, confirm bool, stderr io.Writer) ([]byte, error) {
	if file != "" {
		pass, loose, err := readPassphraseFile(file)
		if err != nil {
			return nil, err
		}
		if loose {
			fmt.Fprintf(stderr, "warning: the passphrase file %s can be read by other users; chmod 600 it\n", file)
		}
		return pass, nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, fmt.Errorf("no passphrase: give --passphrase-file (or %s), or run on a terminal: %w", envPassphraseFile, errUsage)
	}
	fmt.Fprint(stderr, "Passphrase: ")
	pass, err := term.ReadPassword(fd)
	fmt.Fprintln(stderr)
	if err != nil {
		return nil, fmt.Errorf("reading the passphrase: %w", err)
	}
	if len(pass) == 0 {
		return nil, errors.New("empty passphrase")
	}
	if confirm {
		fmt.Fprint(stderr, "Passphrase again: ")
		again, err := term.ReadPassword(fd)
		fmt.Fprintln(stderr)
		if err != nil {
			wipe(pass)
			return nil, fmt.Errorf("reading the passphrase: %w", err)
		}
		same := subtle.ConstantTimeCompare(again, pass) == 1
		wipe(again)
		if !same {
			wipe(pass)
			return nil, errors.New("the two passphrases differ")
		}
	}
	return pass, nil
}

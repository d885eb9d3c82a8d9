package baselineimport

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"sigs.k8s.io/yaml"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

const usage = "usage: baseline import [flags] DIR   (run 'baseline import --help' for the flags)"

// Run implements "baseline import DIR": it writes the FirmwareBaseline of DIR's files to stdout
// as YAML, and what it left out, with why, to stderr.
func Run(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stdout, usage)
		if len(args) == 0 {
			return errors.New("missing subcommand (import)")
		}
		return nil
	}
	if args[0] != "import" {
		return fmt.Errorf("unknown subcommand %q (want import)", args[0])
	}
	fs := flag.NewFlagSet("baseline import", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var opts Options
	fs.StringVar(&opts.Name, "name", "", "the FirmwareBaseline's name (default: the folder's name)")
	fs.StringVar(&opts.Namespace, "namespace", "", "the FirmwareBaseline's namespace (default: none, kubectl's)")
	fs.StringVar(&opts.Version, "version", "", "the baseline's spec.version, such as 2026.09 (default: the folder's name)")
	fs.StringVar(&opts.URLPrefix, "url-prefix", "", "HTTP(S) address the files are served under: each source is this URL and the file name")
	fs.StringVar(&opts.NodePathPrefix, "node-path-prefix", "", "absolute folder where the files are staged on every agent node: each source is this path and the file name")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() != 1 {
		return errors.New(usage)
	}
	dir := fs.Arg(0)
	base := filepath.Base(filepath.Clean(dir))
	if opts.Name == "" {
		opts.Name = base
	}
	if opts.Version == "" {
		opts.Version = base
	}
	b, skipped, err := Import(dir, opts)
	for _, s := range skipped {
		fmt.Fprintln(stderr, "left out", s)
	}
	if err != nil {
		return err
	}
	out, err := Marshal(b)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

// Marshal writes a baseline as a manifest: no status, no server-set metadata.
func Marshal(b *fwv1.FirmwareBaseline) ([]byte, error) {
	raw, err := yaml.Marshal(b)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	return yaml.Marshal(m)
}

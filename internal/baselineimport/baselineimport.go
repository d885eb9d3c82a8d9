// Package baselineimport turns a folder of HPE firmware files (.fwpkg Smart Components and
// .bin images) into a FirmwareBaseline: each file's SHA-256, and for a .fwpkg the version,
// devices and UpdatableBy of its payload.json, read with the agent's own reader.
package baselineimport

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/ilo"
)

// Options say how the baseline is named and where its sources are.
type Options struct {
	// Name and Namespace of the FirmwareBaseline; Version is its spec.version.
	Name, Namespace, Version string
	// URLPrefix, when set, makes each source an HTTP(S) URL: the prefix, then the file name.
	URLPrefix string
	// NodePathPrefix, when set, makes each source a node path: the prefix, then the file name.
	NodePathPrefix string
}

// Import reads every .fwpkg and .bin file of dir (not its sub-folders) and returns the
// baseline, and the files it left out with why (a package only the host OS can install).
// A file it cannot describe is an error naming it.
func Import(dir string, opts Options) (*fwv1.FirmwareBaseline, []string, error) {
	if (opts.URLPrefix == "") == (opts.NodePathPrefix == "") {
		return nil, nil, errors.New("give exactly one of --url-prefix and --node-path-prefix: where the agents get the files")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	b := &fwv1.FirmwareBaseline{
		TypeMeta:   metav1.TypeMeta{APIVersion: fwv1.GroupVersion.String(), Kind: "FirmwareBaseline"},
		ObjectMeta: metav1.ObjectMeta{Name: opts.Name, Namespace: opts.Namespace},
		Spec:       fwv1.FirmwareBaselineSpec{Version: opts.Version},
	}
	var skipped []string
	names := map[string]bool{}
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || ext != ".fwpkg" && ext != ".bin" {
			continue
		}
		file := filepath.Join(dir, e.Name())
		var c fwv1.BaselineComponent
		if ext == ".fwpkg" {
			var why string
			if c, why, err = describePackage(file); err != nil {
				return nil, nil, err
			}
			if why != "" {
				skipped = append(skipped, e.Name()+": "+why)
				continue
			}
		} else if c, err = describeImage(e.Name()); err != nil {
			return nil, nil, err
		}
		if c.Firmware.SHA256, err = fileSHA256(file); err != nil {
			return nil, nil, err
		}
		if err := setSource(&c.Firmware, e.Name(), opts); err != nil {
			return nil, nil, err
		}
		c.Name = uniqueName(componentName(e.Name()), names)
		b.Spec.Components = append(b.Spec.Components, c)
	}
	if len(b.Spec.Components) == 0 {
		return nil, skipped, fmt.Errorf("%s holds no .fwpkg or .bin file the agents can install", dir)
	}
	return b, skipped, nil
}

// describePackage reads a .fwpkg's payload.json. why is set when the package is left out.
func describePackage(file string) (fwv1.BaselineComponent, string, error) {
	info, err := ilo.DescribeSmartComponent(file)
	if err != nil {
		return fwv1.BaselineComponent{}, "", err
	}
	if !info.ThroughILO {
		return fwv1.BaselineComponent{}, fmt.Sprintf("UpdatableBy %s: only SUM or SUT in the server's operating system can install it, not the iLO", strings.Join(info.UpdatableBy, ", ")), nil
	}
	c := fwv1.BaselineComponent{
		Kind:      fwv1.BaselineKindSmartComponent,
		Firmware:  fwv1.FirmwareSource{Version: info.Version},
		AppliesTo: fwv1.ComponentApplicability{TargetTypes: []fwv1.TargetType{fwv1.TargetTypeILO5, fwv1.TargetTypeILO6}},
	}
	for _, d := range info.Devices {
		if d.Target != "" && !slices.Contains(c.AppliesTo.Devices, d.Target) {
			c.AppliesTo.Devices = append(c.AppliesTo.Devices, d.Target)
		}
		if c.Firmware.Version == "" {
			c.Firmware.Version = d.Version
		}
	}
	if c.Firmware.Version == "" {
		return c, "", fmt.Errorf("%s: payload.json gives no Version, for the package or any device", filepath.Base(file))
	}
	if len(c.AppliesTo.Devices) == 0 {
		return c, "", fmt.Errorf("%s: payload.json gives no Devices.Device[].Target: nothing tells which devices it updates", filepath.Base(file))
	}
	return c, "", nil
}

// HPE's names for firmware images, the only description a .bin carries outside its signed
// payload: ilo5_278.bin (iLO 5 2.78), hpoa500.bin (OA 5.00), A43_2.68_10_29_2021.bin (system
// ROM A43 2.68).
var (
	iloImageName = regexp.MustCompile(`(?i)^ilo([456])_(\d)(\d{2})\.bin$`)
	oaImageName  = regexp.MustCompile(`(?i)^hpoa(\d)(\d{2})\.bin$`)
	romImageName = regexp.MustCompile(`(?i)^[A-Z]\d{2}_(\d+\.\d+)(_.*)?\.bin$`)
)

// describeImage tells a .bin's kind and version from its HPE file name.
func describeImage(name string) (fwv1.BaselineComponent, error) {
	if m := iloImageName.FindStringSubmatch(name); m != nil {
		return fwv1.BaselineComponent{
			Kind:      fwv1.BaselineKindILO,
			Firmware:  fwv1.FirmwareSource{Version: m[2] + "." + m[3]},
			AppliesTo: fwv1.ComponentApplicability{TargetTypes: []fwv1.TargetType{fwv1.TargetType("iLO" + m[1])}},
		}, nil
	}
	if m := oaImageName.FindStringSubmatch(name); m != nil {
		return fwv1.BaselineComponent{
			Kind:      fwv1.BaselineKindOA,
			Firmware:  fwv1.FirmwareSource{Version: m[1] + "." + m[2]},
			AppliesTo: fwv1.ComponentApplicability{TargetTypes: []fwv1.TargetType{fwv1.TargetTypeOA}},
		}, nil
	}
	if m := romImageName.FindStringSubmatch(name); m != nil {
		return fwv1.BaselineComponent{
			Kind:      fwv1.BaselineKindSystemROM,
			Firmware:  fwv1.FirmwareSource{Version: m[1]},
			AppliesTo: fwv1.ComponentApplicability{TargetTypes: []fwv1.TargetType{fwv1.TargetTypeILO4, fwv1.TargetTypeILO5, fwv1.TargetTypeILO6}},
		}, nil
	}
	return fwv1.BaselineComponent{}, fmt.Errorf("%s: a .bin carries no readable version, and its name is not one of HPE's (ilo5_278.bin, hpoa500.bin, A43_2.68_10_29_2021.bin): rename it so, or move it out of the folder", name)
}

func fileSHA256(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func setSource(fw *fwv1.FirmwareSource, file string, opts Options) error {
	if opts.NodePathPrefix != "" {
		fw.NodePath = path.Join(opts.NodePathPrefix, file)
		return nil
	}
	u, err := url.Parse(opts.URLPrefix)
	if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("--url-prefix %q is not an absolute http or https URL", opts.URLPrefix)
	}
	fw.URL = u.JoinPath(file).String()
	return nil
}

var notInLabel = regexp.MustCompile(`[^a-z0-9]+`)

// componentName makes a DNS label of a file name: "ilo5_278.bin" gives "ilo5-278".
func componentName(file string) string {
	n := notInLabel.ReplaceAllString(strings.ToLower(strings.TrimSuffix(file, filepath.Ext(file))), "-")
	n = strings.Trim(n, "-")
	if len(n) > 56 { // room for a "-NN" suffix
		n = strings.TrimRight(n[:56], "-")
	}
	if n == "" {
		n = "component"
	}
	return n
}

// uniqueName returns n, or n with the first free "-N" suffix.
func uniqueName(n string, seen map[string]bool) string {
	name := n
	for i := 2; seen[name]; i++ {
		name = n + "-" + strconv.Itoa(i)
	}
	seen[name] = true
	return name
}

package oa

import (
	"strings"
	"testing"
)

// showOAInfo and showServerInfo are an OA's SHOW OA INFO and SHOW SERVER INFO output, in the
// layout of a c7000 OA 4.x (HPE's OA CLI guide; internal/simulator/oa says the same).
const showOAInfo = "\r\nOnboard Administrator #1 information:\r\n\tProduct Name  : BladeSystem c7000 DDR2 Onboard Administrator with KVM\r\n" +
	"\tPart Number   : 456204-B21\r\n\tSerial Number : OB9ASIM0001\r\n\tManufacturer  : HPE\r\n" +
	"\tFirmware Ver. : 4.97 Apr 28 2021\r\n\tHw Board Type : 2\r\n\tLoader Version: U-Boot 1.2.0 (Sep 26 2008 - 10:26:47)\r\n\r\n"

const showServerInfo = "\r\nServer Blade #3 Information:\r\n\tType: Server Blade\r\n\tManufacturer: HPE\r\n" +
	"\tProduct Name: ProLiant BL460c Gen9\r\n\tROM Version: I36 05/21/2019\r\n\r\n\tManagement Processor Information:\r\n" +
	"\tType: iLO4\r\n\tName: ILOCZSIM0003\r\n\tFirmware Version: 2.80 Jan 25 2022\r\n\tIP Address: 127.0.0.1\r\n\r\n"

// FuzzParseVersions feeds the OA CLI parsers text an OA (or whoever answers on its address)
// may send: they never panic, a version they find is a word of the input, and the quoted
// error line they would show stays a line of it.
func FuzzParseVersions(f *testing.F) {
	for _, s := range []string{showOAInfo, showServerInfo, "\r\nInvalid Arguments\r\n",
		"\r\nServer Blade #4 information:\r\n\tServer Blade Type: No Server Blade Installed\r\n", "", "Firmware Ver. :", "ERROR: unable\n\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, out string) {
		for name, parse := range map[string]func(string) (string, error){
			"SHOW OA INFO":     func(s string) (string, error) { return ParseOAVersion(s, "t") },
			"SHOW SERVER INFO": func(s string) (string, error) { return ParseILOVersion(s, "t", 3) },
		} {
			v, err := parse(out)
			switch {
			case err == nil && (v == "" || strings.ContainsAny(v, " \t\r\n") || !strings.Contains(out, v)):
				t.Fatalf("%s: version %q is not a word of the output %q", name, v, out)
			case err != nil && v != "":
				t.Fatalf("%s: version %q with error %v", name, v, err)
			}
		}
		if msg := oaMessage(out); len(msg) > 4*len(out)+len(`"(no output)"`) {
			t.Fatalf("oaMessage(%q) = %d bytes, more than the output quoted", out, len(msg))
		}
	})
}

package driver

import (
	"context"
	"errors"
	"sync"
	"testing"
)

func TestFake(t *testing.T) {
	f := NewFake(FakeBehavior{Version: "1.0"})
	f.Set("bad", FakeBehavior{Version: "1.0", UpdateErr: errors.New("boom")})
	f.Set("down", FakeBehavior{OpenErr: errors.New("unreachable")})
	reg := f.Registry()
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b", "bad"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := reg.Open(ctx, Target{Name: name, Type: TypeILO5, LocalPort: 60000})
			if err != nil {
				t.Error(err)
				return
			}
			defer d.Close()
			var last Progress
			res, err := d.Update(ctx, Firmware{Version: "2.0"}, func(p Progress) { last = p })
			if name == "bad" {
				if err == nil {
					t.Error("bad: Update succeeded")
				}
				return
			}
			if err != nil || res.VersionBefore != "1.0" || res.VersionAfter != "2.0" || last.Percent != 100 {
				t.Errorf("%s: %+v %v (last progress %+v)", name, res, err, last)
			}
		}()
	}
	wg.Wait()
	if _, err := reg.Open(ctx, Target{Name: "down", Type: TypeOA}); err == nil {
		t.Error("down: Open succeeded")
	}
	if f.Version("a") != "2.0" || f.Version("bad") != "1.0" || f.Flashes("a") != 1 || f.TotalFlashes() != 3 {
		t.Errorf("versions a=%s bad=%s, flashes a=%d total=%d", f.Version("a"), f.Version("bad"), f.Flashes("a"), f.TotalFlashes())
	}
	if p := f.LocalPorts("b"); len(p) != 1 || p[0] != 60000 || f.Opens("down") != 1 {
		t.Errorf("local ports %v, opens(down) %d", p, f.Opens("down"))
	}
}

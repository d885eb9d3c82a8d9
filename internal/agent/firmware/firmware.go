// Package firmware fetches a firmware image, verifies its SHA-256 and keeps it in a
// content-addressed cache on the node, so that the agent's firmware server (rule P2) only ever
// serves verified bytes.
//
// The cache layout under Cache.Dir is:
//
//	sha256/<hex>           a verified image, read-only
//	sha256/<hex>.verified  marker: size and mtime of the image when it was verified
//	sha256/<hex>.partial   an interrupted download, continued with a Range request
//	locks/<hex>.lock       flock(2) target that serialises fetchers of one digest
//
// The directory is meant to be a hostPath shared by every agent of a node: an image is fetched
// once per node, and fetchers of the same digest, in one process or in several, take turns on
// the lock file instead of writing over each other.
package firmware

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Source says where an image comes from and what it must hash to. Exactly one of URL and Path
// is set.
type Source struct {
	// URL is an http or https URL, downloaded with Cache.Client.
	URL string
	// Path is an absolute path to a file on the node: a PersistentVolumeClaim's mount, or a
	// file staged on the node beforehand.
	Path string
	// SHA256 is the expected digest, 64 hex digits (an optional "sha256:" prefix is accepted).
	SHA256 string
	// FileName is the name the image is served under; empty means the last element of URL's
	// path or of Path.
	FileName string
}

// Image is a verified file in the cache. Only Cache.Get makes images that report Verified.
type Image struct {
	// Path is the cached file, read-only; it never changes while its digest is the same.
	Path string
	// SHA256 is the lower-case hex digest that the file was checked against.
	SHA256 string
	// Size is the file's length in bytes.
	Size int64
	// FileName is the name the image is served under (see Source.FileName).
	FileName string

	modTime  time.Time
	verified bool
}

// Verified reports whether the image came from Cache.Get, which returns only files whose
// digest it checked (or whose verified marker still matches).
func (i Image) Verified() bool { return i.verified }

// ModTime is the cached file's modification time when it was verified. A server compares it
// with the file on disk to notice a file changed behind the cache's back.
func (i Image) ModTime() time.Time { return i.modTime }

// DigestMismatchError is returned when the bytes of a source do not hash to the expected
// digest. The bad bytes have been removed from the cache by the time it is returned.
//
// It does not carry the digest the bytes had: the message reaches the TargetUpdate, and for
// a nodePath source the real digest would tell whoever may create a job the digest of a node
// file they cannot read (docs/security.md). Whoever may read the file can hash it.
type DigestMismatchError struct {
	// Source is the URL or path the bytes came from.
	Source   string
	Expected string
}

// Error names the source and the expected digest, so that a log line alone shows which job
// setting and which file disagree.
func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("sha256 mismatch for %s: the file does not hash to the expected %s", e.Source, e.Expected)
}

// Cache fetches and verifies images into Dir. The zero value with Dir set is usable; a Cache
// may be used from several goroutines.
type Cache struct {
	// Dir is the cache root, shared by all agents of a node.
	Dir string
	// Client downloads URL sources; callers inject TLS settings (CA bundle) through it.
	// Nil means http.DefaultClient.
	Client *http.Client
	// Log receives one line per fetch; nil discards.
	Log *slog.Logger
}

// lockPoll bounds how long a waiter sleeps between non-blocking flock attempts; polling keeps
// the wait cancellable by the context, which a blocking flock(2) is not.
const lockPoll = 100 * time.Millisecond

// Get returns the verified image for src, fetching it into the cache unless a verified copy
// is already there. It never returns an unverified file.
func (c *Cache) Get(ctx context.Context, src Source) (Image, error) {
	digest, name, err := src.validate()
	if err != nil {
		return Image{}, err
	}
	if c.Dir == "" {
		return Image{}, errors.New("firmware: Cache.Dir is empty")
	}
	log := c.log().With("sha256", digest, "source", src.origin())
	final := c.imagePath(digest)

	// Fast path without the lock: a marker is only written after its file was verified and
	// is removed before its file is, so a matching marker means a verified file.
	if img, ok := c.trusted(digest, name); ok {
		log.Debug("firmware cache hit")
		return img, nil
	}

	for _, d := range []string{filepath.Join(c.Dir, "sha256"), filepath.Join(c.Dir, "locks")} {
		// Group-writable (the agent's umask permits it): agents of the node share the cache
		// through their group, root or not (cache-init).
		if err := os.MkdirAll(d, 0o775); err != nil {
			return Image{}, fmt.Errorf("firmware: cache: %w", err)
		}
	}
	unlock, err := lockFile(ctx, filepath.Join(c.Dir, "locks", digest+".lock"))
	if err != nil {
		return Image{}, fmt.Errorf("firmware: lock %s: %w", digest, err)
	}
	defer unlock()

	// Another fetcher may have finished while this one waited.
	if img, ok := c.trusted(digest, name); ok {
		log.Debug("firmware cache hit after wait")
		return img, nil
	}
	// A file without a (matching) marker is re-hashed before it is trusted.
	if _, err := os.Stat(final); err == nil {
		sum, size, err := hashFile(ctx, final)
		if err != nil {
			return Image{}, err
		}
		if sum == digest {
			return c.markVerified(digest, name, size)
		}
		log.Warn("cached firmware is corrupt, fetching again", "actual", sum)
		c.remove(digest)
	}

	start := time.Now()
	var size int64
	if src.URL != "" {
		size, err = c.download(ctx, log, src.URL, digest)
	} else {
		size, err = c.copyFile(ctx, src.Path, digest)
	}
	if err != nil {
		log.Warn("firmware fetch failed", "err", err, "duration", time.Since(start))
		return Image{}, err
	}
	img, err := c.markVerified(digest, name, size)
	if err != nil {
		return Image{}, err
	}
	log.Info("firmware fetched and verified", "bytes", size, "duration", time.Since(start))
	return img, nil
}

func (c *Cache) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (c *Cache) client() *http.Client {
	if c.Client != nil {
		return c.Client
	}
	return http.DefaultClient
}

func (c *Cache) imagePath(digest string) string {
	return filepath.Join(c.Dir, "sha256", digest)
}

// validate checks the source and returns its normalised digest and file name. Errors name
// the offending field so that they can be shown next to the UpdateJob's spec.
func (s Source) validate() (digest, name string, err error) {
	switch {
	case s.URL == "" && s.Path == "":
		return "", "", errors.New("firmware: source: one of URL or Path must be set")
	case s.URL != "" && s.Path != "":
		return "", "", errors.New("firmware: source: only one of URL or Path may be set")
	}
	digest = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(s.SHA256), "sha256:"))
	if len(digest) != 64 {
		return "", "", fmt.Errorf("firmware: source SHA256: want 64 hex digits, got %d characters", len(digest))
	}
	if _, err := hex.DecodeString(digest); err != nil {
		return "", "", fmt.Errorf("firmware: source SHA256: not hex: %q", s.SHA256)
	}
	name = s.FileName
	if s.URL != "" {
		u, err := url.Parse(s.URL)
		if err != nil {
			return "", "", fmt.Errorf("firmware: source URL: %w", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return "", "", fmt.Errorf("firmware: source URL: scheme must be http or https, got %q", u.Scheme)
		}
		if u.Host == "" {
			return "", "", fmt.Errorf("firmware: source URL: no host in %q", s.URL)
		}
		if name == "" {
			name = path.Base(u.Path)
		}
	} else {
		if !filepath.IsAbs(s.Path) {
			return "", "", fmt.Errorf("firmware: source Path: must be absolute, got %q", s.Path)
		}
		if name == "" {
			name = filepath.Base(s.Path)
		}
	}
	if err := checkFileName(name); err != nil {
		return "", "", fmt.Errorf("firmware: source FileName: %w", err)
	}
	return digest, name, nil
}

// checkFileName refuses names that could not be one path element of a URL: the firmware
// server builds /fw/<token>/<name> from it.
func checkFileName(name string) error {
	switch {
	case name == "", name == ".", name == "..", name == "/":
		return fmt.Errorf("%q is not a file name (set FileName)", name)
	case strings.ContainsAny(name, "/\\\x00"):
		return fmt.Errorf("%q must not contain a path separator or NUL", name)
	case len(name) > 255:
		return errors.New("longer than 255 bytes")
	}
	return nil
}

func (s Source) origin() string {
	if s.URL != "" {
		return redactURL(s.URL)
	}
	return s.Path
}

// redactURL drops user info and the query, which may carry credentials or signed tokens.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "redacted"
	}
	return u.String()
}

// marker is what <hex>.verified holds.
type marker struct {
	Size         int64 `json:"size"`
	ModTimeNanos int64 `json:"mtimeNanos"`
}

// trusted returns the cached image when its marker matches the file's size and mtime.
func (c *Cache) trusted(digest, name string) (Image, bool) {
	b, err := os.ReadFile(c.imagePath(digest) + ".verified")
	if err != nil {
		return Image{}, false
	}
	var m marker
	if json.Unmarshal(b, &m) != nil {
		return Image{}, false
	}
	fi, err := os.Stat(c.imagePath(digest))
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != m.Size || fi.ModTime().UnixNano() != m.ModTimeNanos {
		return Image{}, false
	}
	return c.image(digest, name, fi), true
}

func (c *Cache) image(digest, name string, fi os.FileInfo) Image {
	return Image{
		Path: c.imagePath(digest), SHA256: digest, Size: fi.Size(), FileName: name,
		modTime: fi.ModTime(), verified: true,
	}
}

// markVerified records the verified file's size and mtime so that later Gets need not hash it
// again. Called with the lock held.
func (c *Cache) markVerified(digest, name string, size int64) (Image, error) {
	final := c.imagePath(digest)
	fi, err := os.Stat(final)
	if err != nil {
		return Image{}, fmt.Errorf("firmware: cache: %w", err)
	}
	if fi.Size() != size {
		c.remove(digest)
		return Image{}, fmt.Errorf("firmware: cache: %s changed while being verified", final)
	}
	b, _ := json.Marshal(marker{Size: fi.Size(), ModTimeNanos: fi.ModTime().UnixNano()})
	if err := writeFileAtomic(final+".verified", b); err != nil {
		return Image{}, fmt.Errorf("firmware: cache: %w", err)
	}
	return c.image(digest, name, fi), nil
}

// remove deletes a bad image: the marker first, so that no reader trusts the file meanwhile.
func (c *Cache) remove(digest string) {
	final := c.imagePath(digest)
	_ = os.Remove(final + ".verified")
	_ = os.Remove(final)
}

// download streams url into <hex>.partial, continuing a previous partial download when the
// server honours Range, and renames it into place once its digest matches. Called with the
// lock held.
func (c *Cache) download(ctx context.Context, log *slog.Logger, rawURL, digest string) (int64, error) {
	partial := c.imagePath(digest) + ".partial"
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE, 0o664)
	if err != nil {
		return 0, fmt.Errorf("firmware: cache: %w", err)
	}
	defer f.Close()

	// Re-hash what an earlier attempt left: SHA-256 cannot resume from nothing but the bytes.
	h := sha256.New()
	have, err := copyCtx(ctx, h, f)
	if err != nil {
		return 0, fmt.Errorf("firmware: read partial: %w", err)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return 0, fmt.Errorf("firmware: source URL: %w", err)
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return 0, fmt.Errorf("firmware: download %s: %w", redactURL(rawURL), err)
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		start, err := contentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil || start != have {
			// Appending at the wrong offset could only end in a mismatch; start over next time.
			_ = f.Truncate(0)
			return 0, fmt.Errorf("firmware: download %s: asked for bytes %d-, got Content-Range %q",
				redactURL(rawURL), have, resp.Header.Get("Content-Range"))
		}
		log.Info("resuming firmware download", "offset", have)
	case resp.StatusCode == http.StatusOK:
		if have > 0 {
			log.Info("server ignored Range, restarting firmware download", "discarded", have)
		}
		if err := f.Truncate(0); err != nil {
			return 0, fmt.Errorf("firmware: cache: %w", err)
		}
		h.Reset()
		have = 0
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0:
		// The partial may already hold the whole file (an attempt that died before rename).
		if hex.EncodeToString(h.Sum(nil)) != digest {
			_ = f.Truncate(0)
			return 0, fmt.Errorf("firmware: download %s: %s for bytes %d-; partial discarded",
				redactURL(rawURL), resp.Status, have)
		}
		return c.install(f, partial, digest, have)
	default:
		return 0, fmt.Errorf("firmware: download %s: %s", redactURL(rawURL), resp.Status)
	}

	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return 0, fmt.Errorf("firmware: cache: %w", err)
	}
	// Stream to disk and hash on the way; the image is never held in memory. A failure here
	// keeps the partial for the next attempt to resume.
	n, err := copyCtx(ctx, io.MultiWriter(f, h), resp.Body)
	if err != nil {
		return 0, fmt.Errorf("firmware: download %s after %d bytes: %w", redactURL(rawURL), have+n, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != digest {
		f.Close()
		_ = os.Remove(partial)
		return 0, &DigestMismatchError{Source: redactURL(rawURL), Expected: digest}
	}
	return c.install(f, partial, digest, have+n)
}

// copyFile copies a file from the node (PVC mount or staged path) into the cache. The copy,
// not the original, is served: a file on a shared volume could be rewritten after it was
// verified. Called with the lock held.
func (c *Cache) copyFile(ctx context.Context, src, digest string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, fmt.Errorf("firmware: source Path: %w", err)
	}
	defer in.Close()
	if fi, err := in.Stat(); err != nil || !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("firmware: source Path: %s is not a regular file", src)
	}
	partial := c.imagePath(digest) + ".partial"
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o664)
	if err != nil {
		return 0, fmt.Errorf("firmware: cache: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := copyCtx(ctx, io.MultiWriter(f, h), in)
	if err != nil {
		f.Close()
		_ = os.Remove(partial)
		return 0, fmt.Errorf("firmware: copy %s: %w", src, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != digest {
		f.Close()
		_ = os.Remove(partial)
		return 0, &DigestMismatchError{Source: src, Expected: digest}
	}
	return c.install(f, partial, digest, n)
}

// install makes a verified partial file the cached image: synced, read-only, renamed.
func (c *Cache) install(f *os.File, partial, digest string, size int64) (int64, error) {
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("firmware: cache: %w", err)
	}
	if err := f.Chmod(0o444); err != nil {
		return 0, fmt.Errorf("firmware: cache: %w", err)
	}
	if err := os.Rename(partial, c.imagePath(digest)); err != nil {
		return 0, fmt.Errorf("firmware: cache: %w", err)
	}
	return size, nil
}

// hashFile hashes a cached file that has no valid marker.
func hashFile(ctx context.Context, p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, fmt.Errorf("firmware: cache: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := copyCtx(ctx, h, f)
	if err != nil {
		return "", 0, fmt.Errorf("firmware: hash %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// copyBufSize is large enough to keep syscall counts low on multi-GiB images, small enough to
// be irrelevant next to them.
const copyBufSize = 256 << 10

// copyCtx is io.Copy that stops when ctx is done, between reads.
func copyCtx(ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, copyBufSize)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return n, ctxErr
			}
			return n, rerr
		}
	}
}

// contentRangeStart parses the first byte position of "bytes start-end/size".
func contentRangeStart(v string) (int64, error) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, fmt.Errorf("bad Content-Range %q", v)
	}
	startStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, fmt.Errorf("bad Content-Range %q", v)
	}
	return strconv.ParseInt(strings.TrimSpace(startStr), 10, 64)
}

// writeFileAtomic writes b to p through a temporary file and a rename, so readers see either
// the old content or the new one.
func writeFileAtomic(p string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), filepath.Base(p)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	// Readable by the node's other agents, root or not (cache-init); CreateTemp makes 0600.
	if err := tmp.Chmod(0o664); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

// lockFile takes an exclusive flock on p, polling so that ctx can cancel the wait. flock locks
// belong to the open file description, so two goroutines of one process exclude each other as
// two processes do.
func lockFile(ctx context.Context, p string) (unlock func(), err error) {
	// Read-only is enough for flock, and lets agents running as other users share the lock.
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE, 0o664)
	if err != nil {
		return nil, err
	}
	wait := 5 * time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, lockPoll)
	}
}

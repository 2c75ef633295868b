#!/bin/bash
# basefs genkey: files and modes, refusal to overwrite, --key, --help, bad options.
set -u
BASEFS=${BASEFS:?set BASEFS to the basefs binary}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then echo "ok - $what"; else echo "not ok - $what"; fail=1; fi
}
mode_of() { stat -c %a "$1"; }

# Default location: $BASEFS_HOME/id_ec, the home created 0700.
export BASEFS_HOME=$tmp/home/nested
out=$("$BASEFS" genkey 2>"$tmp/err"); rc=$?
check "genkey exits 0" [ $rc -eq 0 ]
check "home created" [ -d "$BASEFS_HOME" ]
check "home mode 0700" [ "$(mode_of "$BASEFS_HOME")" = 700 ]
check "private key written" [ -s "$BASEFS_HOME/id_ec" ]
check "public key written" [ -s "$BASEFS_HOME/id_ec.pub" ]
check "private key mode 0600" [ "$(mode_of "$BASEFS_HOME/id_ec")" = 600 ]
check "no temporary files left" [ "$(ls -A "$BASEFS_HOME" | wc -l)" -eq 2 ]
fp=$(echo "$out" | awk '/^fingerprint /{print $2}')
check "prints a 64-hex-digit fingerprint" bash -c "[[ '$fp' =~ ^[0-9a-f]{64}$ ]]"
check "prints the private key path" grep -qF "$BASEFS_HOME/id_ec" <<<"$out"
check "prints the public key path" grep -qF "$BASEFS_HOME/id_ec.pub" <<<"$out"
check "quiet on stderr" [ ! -s "$tmp/err" ]

# The fingerprint is SHA-256 of the 65-byte public point (checked with openssl when present).
if command -v openssl >/dev/null; then
  want=$(openssl ec -pubin -in "$BASEFS_HOME/id_ec.pub" -outform DER 2>/dev/null | tail -c 65 | sha256sum | cut -d' ' -f1)
  check "fingerprint is sha256 of the point" [ "$fp" = "$want" ]
  check "openssl reads the private key" openssl ec -in "$BASEFS_HOME/id_ec" -check -noout 2>/dev/null
fi

# Refuses to overwrite, with one error line, exit 1, and the key unchanged.
before=$(sha256sum "$BASEFS_HOME/id_ec")
"$BASEFS" genkey >"$tmp/out2" 2>"$tmp/err2"; rc=$?
check "refuses to overwrite: exit 1" [ $rc -eq 1 ]
check "refuses to overwrite: one error line" [ "$(wc -l <"$tmp/err2")" -eq 1 ]
check "refuses to overwrite: says so" grep -q "exists" "$tmp/err2"
check "refuses to overwrite: key unchanged" [ "$(sha256sum "$BASEFS_HOME/id_ec")" = "$before" ]
# Only the .pub present: still refused, and no private key appears.
touch "$tmp/lonely.pub"
"$BASEFS" genkey --key "$tmp/lonely" >/dev/null 2>&1; rc=$?
check "refuses when FILE.pub exists" [ $rc -eq 1 ]
check "no private key next to a foreign .pub" [ ! -e "$tmp/lonely" ]

# --key FILE, before or after... (it is the only argument), and --key=FILE.
"$BASEFS" genkey --key "$tmp/other" >/dev/null 2>&1; rc=$?
check "--key FILE exits 0" [ $rc -eq 0 ]
check "--key FILE writes FILE" [ -s "$tmp/other" ]
check "--key FILE writes FILE.pub" [ -s "$tmp/other.pub" ]
check "--key FILE mode 0600" [ "$(mode_of "$tmp/other")" = 600 ]
check "--key FILE is a different key" [ "$(cat "$tmp/other.pub")" != "$(cat "$BASEFS_HOME/id_ec.pub")" ]
"$BASEFS" genkey --key="$tmp/third" >/dev/null 2>&1; rc=$?
check "--key=FILE exits 0" [ $rc -eq 0 ] 
check "--key=FILE writes FILE" [ -s "$tmp/third" ]
"$BASEFS" genkey --key "$tmp/no/such/dir/k" >/dev/null 2>"$tmp/err3"; rc=$?
check "missing directory: exit 1" [ $rc -eq 1 ]
check "missing directory: one error line" [ "$(wc -l <"$tmp/err3")" -eq 1 ]

# --help and bad usage.
"$BASEFS" genkey --help >"$tmp/help" 2>&1; rc=$?
check "--help exits 0" [ $rc -eq 0 ]
check "--help shows the usage" grep -q "genkey \[--key FILE\]" "$tmp/help"
"$BASEFS" genkey --bogus >/dev/null 2>&1; rc=$?
check "bad option exits non-zero" [ $rc -ne 0 ]
"$BASEFS" genkey --key >/dev/null 2>&1; rc=$?
check "--key without FILE exits non-zero" [ $rc -ne 0 ]
"$BASEFS" genkey extra >/dev/null 2>&1; rc=$?
check "extra argument exits non-zero" [ $rc -ne 0 ]

exit $fail

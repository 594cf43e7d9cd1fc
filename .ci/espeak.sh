#!/usr/bin/env bash
# espeak-ng from Debian packages, unpacked without root into DIR, so that the slow audiology test can synthesise
# speech at known times and check the reward with a real Whisper. Optional: without it that test is skipped.
#   bash .ci/espeak.sh DIR    then    export RL_AUDIO_ESPEAK=DIR/espeak-ng
# DIR/espeak-ng is a wrapper that sets LD_LIBRARY_PATH and --path (the directory holding espeak-ng-data) for the
# unpacked binary. The package set is what `apt-get install espeak-ng` would add to this system (on Debian 12 with
# no audio stack: espeak-ng, espeak-ng-data, libespeak-ng1, libpcaudio0, libsonic0, libpulse0, libasyncns0,
# libsndfile1, libflac12, libmp3lame0, libmpg123-0, libogg0, libopus0, libvorbis0a, libvorbisenc2).
set -euo pipefail
dest="$(mkdir -p "$1" && cd "$1" && pwd)"
wrapper="$dest/espeak-ng"
if [ -x "$wrapper" ] && "$wrapper" -q "ok" >/dev/null 2>&1; then exit 0; fi
missing() { apt-get -s install --no-install-recommends espeak-ng 2>/dev/null | awk '/^Inst /{print $2}'; }
packages=$(missing || true)
if [ -z "$packages" ]; then
  if command -v espeak-ng >/dev/null; then # already installed system-wide
    printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v espeak-ng)" >"$wrapper"
    chmod +x "$wrapper"
    exit 0
  fi
  apt-get update -qq >/dev/null # no package lists yet
  packages=$(missing)
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
# shellcheck disable=SC2086
apt-get download $packages >/dev/null 2>&1 || { # stale package lists
  apt-get update -qq >/dev/null
  packages=$(missing)
  apt-get download $packages >/dev/null
}
rm -rf "$dest/root"
for f in ./*.deb; do dpkg -x "$f" "$dest/root"; done
lib=$(dirname "$(find "$dest/root" -name 'libespeak-ng.so.1' | head -n 1)")
data=$(dirname "$(find "$dest/root" -type d -name espeak-ng-data | grep -v /doc/ | head -n 1)")
libs=$(find "$dest/root" -name '*.so*' -exec dirname {} \; | sort -u | tr '\n' ':')
cat >"$wrapper" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="${libs}\${LD_LIBRARY_PATH:-}" exec "$dest/root/usr/bin/espeak-ng" --path="$data" "\$@"
EOF
chmod +x "$wrapper"
[ -n "$lib" ] && "$wrapper" -q "ok"

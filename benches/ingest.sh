#!/usr/bin/env bash
# Ingest benchmark: `loa clip add` on a ~10-minute 128 kbps stereo speech MP3, beside
# ffmpeg's EBU R128 + true-peak pass and mpg123's decode of the same file, in one run.
# Goal (issue 26): loa ≤ 0.4 × ffmpeg. Needs espeak-ng, sox, lame; ffmpeg and mpg123
# are measured when installed. RUNS (default 5) repetitions; the median is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-5}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

cargo build --release --quiet
loa=target/release/loa

# ~10 minutes of Vietnamese speech, stereo 44.1 kHz, 128 kbps CBR.
text="Bản tin cải cách hành chính. Ủy ban nhân dân phường thông báo về việc nộp hồ sơ trực tuyến trên Cổng dịch vụ công quốc gia."
espeak-ng -v vi -w "$work/part.wav" "$text"
sox -D "$work/part.wav" -r 44100 -c 2 "$work/part44.wav"
part_s=$(soxi -D "$work/part44.wav")
repeats=$(python3 -c "import math; print(math.ceil(600 / $part_s))")
parts=(); for _ in $(seq "$repeats"); do parts+=("$work/part44.wav"); done
sox -D "${parts[@]}" "$work/speech.wav" trim 0 600
lame --quiet -b 128 "$work/speech.wav" "$work/speech.mp3"
echo "input: $(soxi -D "$work/speech.wav") s, $(stat -c %s "$work/speech.mp3") bytes, 128 kbps stereo"

cat > "$work/station.toml" <<TOML
[station]
id = "bench"
name = "bench"
data_dir = "data"
TOML

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m}'; }
time_of() { # command... → seconds on stdout
  local start end
  start=$(date +%s.%N); "$@" >/dev/null 2>&1; end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}
measure() { # name command...
  local name=$1; shift
  local t; t=$(for _ in $(seq "$runs"); do rm -rf "$work/data"; time_of "$@"; done | median)
  printf '%-38s %8s s\n' "$name" "$t"
  echo "$t"  >"$work/$name.t"
}

measure "loa clip add" "$loa" --config "$work/station.toml" clip add "$work/speech.mp3" --title bench --topic cchc
rm -rf "$work/data"; "$loa" --config "$work/station.toml" clip add "$work/speech.mp3" --title bench --topic cchc | grep -E '"(duration_ms|loudness_lufs|true_peak_dbfs)"' | tr -d ' \n'; echo
if command -v ffmpeg >/dev/null; then
  measure "ffmpeg -af ebur128=peak=true" ffmpeg -nostdin -hide_banner -i "$work/speech.mp3" -af ebur128=peak=true -f null -
  printf 'ratio loa/ffmpeg: %.2f (goal <= 0.4)\n' "$(echo "$(cat "$work/loa clip add.t") / $(cat "$work/ffmpeg -af ebur128=peak=true.t")" | bc -l)"
else
  echo "ffmpeg not installed: peer not measured"
fi
if command -v mpg123 >/dev/null; then
  measure "mpg123 -t" mpg123 -q -t "$work/speech.mp3"
else
  echo "mpg123 not installed: peer not measured"
fi

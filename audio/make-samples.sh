#!/usr/bin/env bash
# Makes the sample bulletins in audio/ with a Vietnamese synthetic voice (espeak-ng -v vi),
# normalised and encoded as mono 22.05 kHz 48 kbps MP3 (what a ward station's speech needs).
# Needs espeak-ng, sox, lame.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_clip() { # NAME TEXT
  espeak-ng -v vi -s 150 -w "$tmp/$1.wav" "$2"
  sox "$tmp/$1.wav" -r 22050 "$tmp/$1.norm.wav" pad 0.3 0.5 gain -n -3
  lame --quiet -m m -b 48 --tt "$1" "$tmp/$1.norm.wav" "$1.mp3"
}
make_clip cchc-ban-tin-tuan "Bản tin cải cách hành chính hằng tuần. Ủy ban nhân dân phường thông báo: từ tháng này, người dân có thể nộp hồ sơ trực tuyến trên Cổng dịch vụ công quốc gia, không cần đến trụ sở. Mọi thắc mắc xin liên hệ bộ phận một cửa của phường."
make_clip cchc-mot-cua "Bộ phận tiếp nhận và trả kết quả một cửa của phường làm việc từ thứ Hai đến thứ Sáu, buổi sáng từ bảy giờ đến mười một giờ, buổi chiều từ mười ba giờ đến mười bảy giờ."
make_clip thong-bao-ve-sinh "Thông báo: sáng Chủ nhật tuần này, phường tổ chức ra quân tổng vệ sinh môi trường. Đề nghị các hộ gia đình tham gia đầy đủ."
ls -l ./*.mp3

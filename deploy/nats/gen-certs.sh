#!/bin/sh
# Makes a private CA and a server certificate for nats-server with openssl:
#   gen-certs.sh OUT_DIR [NAME...]
# writes OUT_DIR/ca.pem, ca-key.pem, server.pem, server-key.pem. The server certificate covers
# every NAME given (DNS names or IP addresses; default: localhost 127.0.0.1 nats) and is valid
# for 825 days. Existing files are kept: delete OUT_DIR to start over. Clients need only ca.pem
# (`--tls-ca`); keep ca-key.pem offline.
set -eu
out=${1:?usage: gen-certs.sh OUT_DIR [NAME...]}
shift
[ "$#" -gt 0 ] || set -- localhost 127.0.0.1 nats
mkdir -p "$out"
cd "$out"
if [ -f server.pem ]; then
  echo "gen-certs.sh: $out/server.pem exists; keeping it" >&2
  exit 0
fi
umask 077
san=""
for n in "$@"; do
  case "$n" in
    *[!0-9.]*) case "$n" in *:*) kind=IP ;; *) kind=DNS ;; esac ;;
    *) kind=IP ;;
  esac
  san="${san:+$san,}$kind:$n"
done
if [ ! -f ca.pem ]; then
  openssl req -x509 -newkey rsa:3072 -sha256 -nodes -days 3650 \
    -keyout ca-key.pem -out ca.pem -subj "/CN=ordo NATS CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
openssl req -newkey rsa:2048 -sha256 -nodes -keyout server-key.pem -out server.csr \
  -subj "/CN=$1" 2>/dev/null
cat > server.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
EXT
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
  -days 825 -sha256 -extfile server.ext -out server.pem 2>/dev/null
rm -f server.csr server.ext ca.srl
chmod 644 ca.pem server.pem
echo "gen-certs.sh: wrote $out/ca.pem and $out/server.pem for $san"

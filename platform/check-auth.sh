#!/usr/bin/env bash
# Check that the local cluster's Ray Jobs API refuses requests without the token and accepts them with
# it. Exit 0: refused without (401), refused with a wrong token (403), accepted with the token (200).
# Exit 1: an unauthenticated request was NOT refused (token auth is off). Exit 2: cannot check.
#
# Ray 2.60 reads the token from the `Authorization: Bearer <token>` header (or, for proxies,
# `X-Ray-Authorization: Bearer <token>`, or the `ray-authentication-token` cookie); see
# ray/_private/authentication/http_token_authentication.py. The token: ~/.ray/auth_token
# (`ray get-auth-token` prints it; RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH override it).
# By hand:  curl -H "Authorization: Bearer $(cat ~/.ray/auth_token)" http://127.0.0.1:8265/api/jobs/
set -euo pipefail
# shellcheck source=platform/cluster-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster-lib.sh"
url="$DASHBOARD_URL/api/jobs/"

status() { curl -s -o /dev/null -m 10 -w '%{http_code}' "$@" "$url" || true; }
# Headers are read from a file descriptor, so the token never appears on a command line.
with_header() { status -H @<(printf 'Authorization: Bearer %s\n' "$1"); }

anonymous=$(status)
case $anonymous in
  401|403) say "GET $url without a token: $anonymous (refused, as it should be)" ;;
  000) say "GET $url: no answer (is the cluster up? platform/cluster-up.sh)"; exit 2 ;;
  *) say "GET $url without a token: $anonymous -- NOT refused: token authentication is off"; exit 1 ;;
esac

wrong=$(with_header "not-the-token")
say "GET $url with a wrong token: $wrong"
[[ $wrong == 401 || $wrong == 403 ]] || { say "a wrong token was NOT refused"; exit 1; }

token=${RAY_AUTH_TOKEN:-}
[[ -n $token || ! -s $TOKEN_FILE ]] || token=$(<"$TOKEN_FILE")
if [[ -z $token ]]; then
  say "no token found in $TOKEN_FILE or RAY_AUTH_TOKEN: cannot check the authenticated request"; exit 2
fi
authorised=$(with_header "$token")
say "GET $url with 'Authorization: Bearer <token>': $authorised"
[[ $authorised == 200 ]] || { say "the token was not accepted"; exit 2; }

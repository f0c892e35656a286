package scimtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// TokenPath is the path of the OAuth 2 token endpoint (outside BasePath)
// when Options.OAuth2 is set; Server.TokenURL is its URL.
const TokenPath = "/oauth2/token"

// DefaultTokenLifetime is the lifetime of an issued access token when
// OAuth2.TokenLifetime is zero.
const DefaultTokenLifetime = time.Minute

// OAuth2 configures the server's OAuth 2 client-credentials token
// endpoint (RFC 6749 §4.4): the SCIM endpoints then accept the bearer
// tokens it issued, until each expires, instead of Options.Token.
type OAuth2 struct {
	// ClientID and ClientSecret are the client's credentials, taken in an
	// HTTP basic header (client_secret_basic) or in the form
	// (client_secret_post); anything else is refused with 401
	// invalid_client.
	ClientID, ClientSecret string
	// TokenLifetime is how long an issued token is accepted, rounded up
	// to whole seconds (expires_in is in seconds). Default
	// DefaultTokenLifetime.
	TokenLifetime time.Duration
	// RequiredScope, when set, must be among the scopes asked for
	// (400 invalid_scope otherwise).
	RequiredScope string
}

func (o *OAuth2) lifetime() time.Duration {
	if o.TokenLifetime <= 0 {
		return DefaultTokenLifetime
	}
	return max(time.Second, (o.TokenLifetime + time.Second - 1).Truncate(time.Second))
}

// BasicAuth is the user and password the SCIM endpoints require in an
// HTTP basic Authorization header when Options.Basic is set.
type BasicAuth struct {
	Username, Password string
}

// tokenRequest answers one request to the token endpoint.
func (s *Server) tokenRequest(w http.ResponseWriter, r *http.Request) {
	o := s.opts.OAuth2
	s.fmu.Lock()
	s.tokenRequests++
	s.fmu.Unlock()
	oauthError := func(status int, code, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="scimtest token endpoint"`)
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		oauthError(http.StatusMethodNotAllowed, "invalid_request", "the token endpoint takes POST")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		oauthError(http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(http.StatusBadRequest, "invalid_request", "the form does not parse")
		return
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 §2.3.1: both are form-encoded before the basic encoding.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != o.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(o.ClientSecret)) != 1 {
		oauthError(http.StatusUnauthorized, "invalid_client", "unknown client or wrong client secret")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		oauthError(http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type %q: this endpoint issues client_credentials only", gt))
		return
	}
	scopes := strings.Fields(r.PostForm.Get("scope"))
	if o.RequiredScope != "" && !slices.Contains(scopes, o.RequiredScope) {
		oauthError(http.StatusBadRequest, "invalid_scope", "scope "+o.RequiredScope+" is required")
		return
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		oauthError(http.StatusInternalServerError, "server_error", "no randomness")
		return
	}
	token := "at-" + hex.EncodeToString(b[:])
	life := o.lifetime()
	s.fmu.Lock()
	s.issued[token] = time.Now().Add(life)
	s.tokensIssued++
	s.fmu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": token,
		"token_type":   "Bearer",
		"expires_in":   int(life / time.Second),
		"scope":        strings.Join(scopes, " "),
	})
}

// TokenRequests returns how many requests reached the token endpoint
// (refused ones included).
func (s *Server) TokenRequests() int {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.tokenRequests
}

// TokensIssued returns how many access tokens the token endpoint issued:
// more than one shows the client rotated its token.
func (s *Server) TokensIssued() int {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.tokensIssued
}

// IssuedTokens returns every access token issued (expired and revoked
// ones included), for a test that greps its logs for them.
func (s *Server) IssuedTokens() []string {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	out := make([]string, 0, len(s.issued))
	for t := range s.issued {
		out = append(out, t)
	}
	return out
}

// RevokeTokens makes every access token issued so far invalid at once,
// as an identity provider rolling its keys does: the next request with
// one gets 401 invalid_token.
func (s *Server) RevokeTokens() {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	for t := range s.issued {
		s.issued[t] = time.Time{}
	}
}

// validToken reports whether token was issued and has not expired.
func (s *Server) validToken(token string) bool {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	exp, ok := s.issued[token]
	return ok && time.Now().Before(exp)
}

// redactForm hides the client secret of a logged token request body.
func redactForm(body []byte) []byte {
	form, err := url.ParseQuery(string(body))
	if err != nil || !form.Has("client_secret") {
		return body
	}
	form.Set("client_secret", "[REDACTED]")
	return []byte(form.Encode())
}

// CA is a test certificate authority made in-process, for mTLS: a server
// with Options.ClientCA trusts the client certificates it issues.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

// NewCA makes a CA named name, valid for a day.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("scimtest: CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("scimtest: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{cert: cert, key: key, der: der}, nil
}

// CertPEM returns the CA's certificate in PEM.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.der})
}

// Pool returns a pool holding the CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// IssueClient issues a TLS client certificate for commonName and returns
// it and its private key in PEM (for a config's cert_file and key_file).
func (ca *CA) IssueClient(commonName string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("scimtest: client key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("scimtest: client certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// IssueClientCertificate is IssueClient as a tls.Certificate, for a
// client's config.
func (ca *CA) IssueClientCertificate(commonName string) (tls.Certificate, error) {
	c, k, err := ca.IssueClient(commonName)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(c, k)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(fmt.Sprintf("scimtest: serial number: %v", err))
	}
	return n
}

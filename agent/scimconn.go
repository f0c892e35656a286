package agent

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/scim-agent/scim-agent/internal/buildinfo"
	"github.com/scim-agent/scim-agent/internal/config"
	"github.com/scim-agent/scim-agent/scimclient"
)

// scimSetup is what every SCIM client of one agent (or of one check)
// shares: the credentials (one OAuth 2 token for all of them), the rate
// limiter (the server's limit counts every request of the agent, probes
// included), the TLS material and the capability overrides.
type scimSetup struct {
	base      scimclient.Config
	overrides scimclient.Overrides
}

// newSCIMSetup reads the SCIM part of the config: authentication
// (scim.token, scim.oauth2 or scim.basic), scim.cert_file/key_file,
// scim.ca_file, scim.max_requests_per_second and scim.capabilities.
func newSCIMSetup(cfg *config.Config) (*scimSetup, error) {
	sc := cfg.SCIM
	base := scimclient.Config{
		BaseURL:   sc.BaseURL,
		Timeout:   sc.Timeout,
		UserAgent: "scim-agent/" + buildinfo.Read().Short(),
	}
	switch sc.AuthMethod() {
	case config.AuthOAuth2:
		o, err := scimclient.NewOAuth2(scimclient.OAuth2Config{TokenURL: sc.OAuth2.TokenURL, ClientID: sc.OAuth2.ClientID,
			ClientSecret: sc.OAuth2.ClientSecret, Scopes: sc.OAuth2.Scopes})
		if err != nil {
			return nil, fmt.Errorf("scim.oauth2: %w", err)
		}
		base.Auth = o
	case config.AuthBasic:
		base.Auth = scimclient.Basic(sc.Basic.Username, sc.Basic.Password)
	default:
		base.Auth = scimclient.BearerToken(sc.Token)
	}
	if sc.CAFile != "" {
		pem, err := os.ReadFile(sc.CAFile)
		if err != nil {
			return nil, fmt.Errorf("scim.ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("scim.ca_file: %s holds no PEM certificate", sc.CAFile)
		}
		base.RootCAs = pool
	}
	if sc.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(sc.CertFile, sc.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("scim.cert_file %s with scim.key_file %s: %w", sc.CertFile, sc.KeyFile, err)
		}
		base.Certificates = []tls.Certificate{cert}
	}
	if sc.MaxRequestsPerSecond > 0 {
		base.Limiter = rate.NewLimiter(rate.Limit(sc.MaxRequestsPerSecond), max(sc.Burst, 1))
	}
	s := &scimSetup{base: base}
	for _, o := range []struct {
		key string
		v   config.Capability
		out *scimclient.Setting
	}{
		{"patch", sc.Capabilities.Patch, &s.overrides.Patch},
		{"filter", sc.Capabilities.Filter, &s.overrides.Filter},
		{"etag", sc.Capabilities.ETag, &s.overrides.ETag},
		{"bulk", sc.Capabilities.Bulk, &s.overrides.Bulk},
	} {
		v, err := scimclient.ParseSetting(string(o.v))
		if err != nil {
			return nil, fmt.Errorf("scim.capabilities.%s: %w", o.key, err)
		}
		*o.out = v
	}
	return s, nil
}

// client builds one SCIM client. maxAttempts 0 retries retryable
// failures for as long as it takes; onRetry may be nil.
func (s *scimSetup) client(log *zap.Logger, maxAttempts int, onRetry func(string, int, error)) (*scimclient.Client, error) {
	c := s.base
	c.Logger, c.MaxAttempts, c.OnRetry = log, maxAttempts, onRetry
	return scimclient.New(c)
}

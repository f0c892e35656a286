package drupaltest

import (
	"context"
	"fmt"
	"strings"

	"github.com/scim-agent/scim-agent/internal/scimtest"
)

// Differences lists how a SCIM server's accounts differ from the site's
// users, matched by externalId = uuid: a provisioned user with no account
// or two, a userName (compared case-insensitively, as RFC 7643 defines
// it), mail or active that differs, and an account no user accounts for
// (unless its id is in ignore). provisioned says which uids belong on the
// server. No difference means the server matches the database.
func (s *Site) Differences(ctx context.Context, accounts []scimtest.User, provisioned func(uid uint32) bool, ignore ...string) ([]string, error) {
	rows, err := s.DB.QueryContext(ctx, "SELECT uid FROM "+s.t("users")+" ORDER BY uid")
	if err != nil {
		return nil, err
	}
	var uids []uint32
	for rows.Next() {
		var uid uint32
		if err := rows.Scan(&uid); err != nil {
			rows.Close()
			return nil, err
		}
		uids = append(uids, uid)
	}
	rows.Close()
	byUUID := map[string]scimtest.User{}
	var diffs []string
	for _, a := range accounts {
		if _, dup := byUUID[a.ExternalID()]; dup && a.ExternalID() != "" {
			diffs = append(diffs, fmt.Sprintf("two accounts for externalId %s", a.ExternalID()))
		}
		byUUID[a.ExternalID()] = a
	}
	accounted := map[string]bool{}
	for _, id := range ignore {
		accounted[id] = true
	}
	for _, uid := range uids {
		if !provisioned(uid) {
			continue
		}
		u, err := s.Load(ctx, uid)
		if err != nil {
			return nil, err
		}
		a, ok := byUUID[u.UUID]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("uid %d (%s) is not on the server", uid, u.Name))
			continue
		}
		accounted[a.ID] = true
		mail := ""
		if u.Mail != nil {
			mail = *u.Mail
		}
		switch {
		case !strings.EqualFold(a.UserName(), u.Name):
			diffs = append(diffs, fmt.Sprintf("uid %d: server userName %q, Drupal name %q", uid, a.UserName(), u.Name))
		case Email(a) != mail:
			diffs = append(diffs, fmt.Sprintf("uid %d (%s): server email %q, Drupal mail %q", uid, u.Name, Email(a), mail))
		case a.Get("active") != (u.Status == 1):
			diffs = append(diffs, fmt.Sprintf("uid %d (%s): server active %v, Drupal status %d", uid, u.Name, a.Get("active"), u.Status))
		}
	}
	for _, a := range accounts {
		if !accounted[a.ID] {
			diffs = append(diffs, fmt.Sprintf("the server holds %s (%s), which no Drupal user accounts for", a.ID, a.UserName()))
		}
	}
	return diffs, nil
}

// Email returns the work email value of a SCIM account (the one the
// agent manages), else the first, or "".
func Email(a scimtest.User) string {
	emails, _ := a.Get("emails").([]any)
	for _, e := range emails {
		if m, _ := e.(map[string]any); m["type"] == "work" {
			v, _ := m["value"].(string)
			return v
		}
	}
	if len(emails) > 0 {
		v, _ := emails[0].(map[string]any)["value"].(string)
		return v
	}
	return ""
}

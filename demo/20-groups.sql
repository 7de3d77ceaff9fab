-- ccrm demo, part 2: target groups over the sample data.
\echo
\echo '== target groups =='
\o /dev/null

-- the seed's example: a group of contacts on a payment plan
SELECT ccrm.create_target_group('Payment plan', 'contact',
    '{"all": [{"field": "payment_plan", "op": "is_true"},
              {"not": {"field": "email_opt_out", "op": "is_true"}}]}',
    responsible_user_id => (SELECT id FROM ccrm.crm_user WHERE username = 'anna'),
    description => 'Contacts with a payment plan who accept email');

-- contacts in the Helsinki region of Finnish accounts, not called in the last 30 days
SELECT ccrm.create_target_group('Helsinki region, not called', 'contact',
    '{"all": [{"field": "city", "op": "in", "value": ["Helsinki", "Espoo", "Vantaa"]},
              {"field": "account.country", "op": "eq", "value": "FI"},
              {"not": {"has_activity": {"kind": "call", "within_last": "30 days"}}}]}',
    responsible_user_id => (SELECT id FROM ccrm.crm_user WHERE username = 'helena'));

-- accounts by a custom field, and contacts of those accounts through in_group
SELECT ccrm.create_target_group('Key accounts', 'account',
    '{"any": [{"field": "annual_revenue", "op": "gte", "value": 2000000},
              {"field": "customer_since", "op": "older_than", "value": "8 years"}]}');
SELECT ccrm.create_target_group('Key account contacts', 'contact',
    '{"all": [{"in_group": "Key accounts"}, {"field": "owner.username", "op": "not_null"}]}');

-- invoices (a registered entity) overdue and unpaid
SELECT ccrm.create_target_group('Overdue invoices', 'invoice',
    '{"all": [{"field": "paid", "op": "is_false"}, {"field": "due_on", "op": "older_than", "value": "1 day"}]}');

-- a static group: members are added by hand
SELECT ccrm.create_target_group('Fair visitors 2026', 'contact', description => 'Met at the autumn fair');
SELECT ccrm.include_in_group('Fair visitors 2026', ARRAY(SELECT id FROM ccrm.contact WHERE id % 6 = 1));

\o
\echo
\echo 'The compiled SQL of a filter:'
SELECT ccrm.filter_sql('contact', filter) FROM ccrm.target_group WHERE name = 'Helsinki region, not called';

\echo
\echo 'Refreshing every group (key accounts before the group that uses them):'
SELECT g.name, r.*
  FROM ccrm.target_group g
  CROSS JOIN LATERAL ccrm.refresh_target_group(g.id) r
 ORDER BY g.id;

\echo
\echo 'Members of "Payment plan":'
SELECT c.firstname, c.lastname, c.email, a.name AS account, m.entered_at::date AS entered
  FROM ccrm.target_group_member m
  JOIN ccrm.contact c ON c.id = m.member_id
  LEFT JOIN ccrm.account a ON a.id = c.account_id
 WHERE m.group_id = ccrm.target_group_id('Payment plan')
 ORDER BY c.id;

\echo
\echo 'A change in the data, a manual exclude, and a second refresh that applies only the difference:'
-- two contacts who accept email get a payment plan: they will join
UPDATE ccrm.contact SET attrs = attrs || '{"payment_plan": true}'
 WHERE id IN (SELECT id FROM ccrm.contact
               WHERE NOT email_opt_out AND attrs @> '{"payment_plan": false}' ORDER BY id LIMIT 2);
-- the first member opts out of email: they will leave
UPDATE ccrm.contact SET email_opt_out = true
 WHERE id = (SELECT min(member_id) FROM ccrm.target_group_member
              WHERE group_id = ccrm.target_group_id('Payment plan'));
-- the last member is taken out by hand, and stays out at every refresh
SELECT ccrm.exclude_from_group('Payment plan',
         ARRAY(SELECT max(member_id) FROM ccrm.target_group_member
                WHERE group_id = ccrm.target_group_id('Payment plan'))) AS excluded;
SELECT * FROM ccrm.refresh_target_group('Payment plan');

\echo
\echo 'Joins and leaves of "Payment plan":'
SELECT h.event, c.firstname || ' ' || c.lastname AS contact
  FROM ccrm.target_group_history h JOIN ccrm.contact c ON c.id = h.member_id
 WHERE h.group_id = ccrm.target_group_id('Payment plan')
 ORDER BY h.at, h.event, c.id;

\echo
\echo 'All groups:'
SELECT name, entity, is_static, member_count, responsible, included, excluded FROM ccrm.target_groups ORDER BY id;

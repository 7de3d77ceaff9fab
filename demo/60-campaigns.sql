-- ccrm demo, part 6: the seed's campaign flow.  A campaign for an invitation
-- event takes a target group, is pruned of duplicates and opt-outs, shows
-- its summary; then the invitation template is set, and only the members
-- of the group added after that get the invitation through the outbox.
\echo
\echo '== campaigns =='
\o /dev/null
SELECT ccrm.create_channel('demo_mail', 'email', is_default => true)
 WHERE NOT EXISTS (SELECT 1 FROM ccrm.channel WHERE medium = 'email' AND is_default);
-- a few leads, one of them with the address of a contact (trimmed, in capitals)
INSERT INTO ccrm.lead (firstname, lastname, company, email, email_opt_out)
SELECT 'Leo', 'Lind', 'Lind Oy', '  ' || upper(email) || ' ', false
  FROM ccrm.contact WHERE id = (SELECT min(member_id) FROM ccrm.target_group_member
                                 WHERE group_id = ccrm.target_group_id('Payment plan'));
INSERT INTO ccrm.lead (firstname, lastname, company, email, email_opt_out) VALUES
    ('Mia', 'Moisio', 'Moisio Ky', 'mia@moisio.example', false),
    ('Nils', 'Nyberg', 'Nyberg AB', 'nils@nyberg.example', true);
SELECT ccrm.create_target_group('Demo leads', 'lead', '{"field": "company", "op": "not_null"}');
SELECT * FROM ccrm.refresh_target_group('Demo leads');

SELECT ccrm.create_campaign('Customer evening',
    start_date => current_date + 14, estimated_end_date => current_date + 30,
    responsible_user_id => (SELECT id FROM ccrm.crm_user WHERE username = 'anna'),
    description => 'Invitation event for customers');
\o
SELECT number, name, active, start_date, estimated_end_date FROM ccrm.campaign WHERE name = 'Customer evening';

\echo 'Add the payment-plan group and the leads (nobody is emailed: no template yet):'
SELECT ccrm.add_group_to_campaign('Customer evening', 'Payment plan') AS added_contacts,
       ccrm.add_group_to_campaign('Customer evening', 'Demo leads') AS added_leads;

\echo 'Prune: one contact per account, one member per address, no opt-outs:'
SELECT reason, count(*) AS removed FROM ccrm.prune_campaign('Customer evening', 'account duplicates') GROUP BY reason;
SELECT reason, count(*) AS removed, min(detail) AS for_example_kept FROM ccrm.prune_campaign('Customer evening', 'email duplicates') GROUP BY reason;
SELECT reason, count(*) AS removed FROM ccrm.prune_campaign('Customer evening', 'opt-outs') GROUP BY reason;

\echo 'The summary:'
\x on
SELECT * FROM ccrm.campaign_summary('Customer evening');
\x off

\echo 'Set the invitation template; members added from now on get it:'
\o /dev/null
SELECT ccrm.create_message_template('Evening invitation', 'email', 'contact',
    subject => 'Invitation: $campaign-name$ ($campaign-number$)',
    body => 'Dear $contact-firstname|guest$ of $account-name|your company$, welcome on $campaign-start_date$.',
    sender_id => (SELECT id FROM ccrm.crm_user WHERE username = 'anna'));
SELECT ccrm.alter_campaign('Customer evening', email_template => 'Evening invitation');
\o
SELECT ccrm.add_group_to_campaign('Customer evening', 'Key account contacts') AS added_key_account_contacts;

\echo 'Who got the invitation: the key-account contacts added after the template, not the first group:'
SELECT m.added_how, m.added_from, count(*) AS members,
       count(o.id) FILTER (WHERE o.status = 'queued') AS invitations_queued,
       count(*) FILTER (WHERE m.email_status IS NULL) AS added_before_template
  FROM ccrm.campaign_member m LEFT JOIN ccrm.outbox o ON o.id = m.message_id AND m.email_status = 'queued'
 WHERE m.campaign_id = ccrm.campaign_id('Customer evening')
 GROUP BY 1, 2 ORDER BY 2;
SELECT o.recipient, o.subject, o.body FROM ccrm.outbox o
 WHERE o.source = 'campaign' AND o.source_id = ccrm.campaign_id('Customer evening')
 ORDER BY o.id LIMIT 3;
SELECT emailed, email_skipped FROM ccrm.campaign_summary('Customer evening');

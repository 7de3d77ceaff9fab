-- Tag templates: tags, fallbacks, $$, HTML escaping, every kind of error.
CREATE EXTENSION ccrm;
-- err(sql): run a statement and show how it failed (SQLSTATE, message, hint).
CREATE FUNCTION pg_temp.err(sql text, OUT state text, OUT message text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    state := 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
END $$;
SELECT ccrm.define_field('contact', 'nickname', 'text');
SELECT ccrm.define_field('account', 'customer_since', 'date');
INSERT INTO ccrm.crm_user (id, username, firstname, lastname, email, mobile) VALUES
    (1, 'anna', 'Anna', 'Korhonen', 'anna@example.com', '+358 50 1');
INSERT INTO ccrm.account (id, name, email, phone, attrs) VALUES
    (1, 'Acme <Oy> & "Sons"', 'info@acme.example', '+358 9 1', '{"customer_since": "2015-03-01"}');
INSERT INTO ccrm.contact (id, account_id, firstname, lastname, email, phone, mobile, attrs) VALUES
    (1, 1, 'Aino', 'Laine', 'aino@acme.example', '+358 9 2', '+358 40 3', '{"nickname": "Ainoska"}'),
    (2, NULL, '', NULL, NULL, NULL, NULL, '{}');
INSERT INTO ccrm.lead (id, firstname, company) VALUES (1, 'Leo', 'Lead Oy');
SELECT ccrm.create_target_group('Demo <group>', 'contact');

-- the seed's tags
SELECT ccrm.render_template(
  'Group $targetgroup-name$ | user $user-name$ $user-firstname$ $user-lastname$ $user-email$ $user-mobile$ | '
  'contact $contact-firstname$ $contact-lastname$ $contact-email$ $contact-phone$ $contact-mobile$ | '
  'account $account-name$ $account-email$ $account-phone$',
  'contact', 1, 1, 'Demo <group>');
-- any field, custom fields too; fallbacks when NULL or empty; $$ is a dollar
SELECT ccrm.render_template('Hi $contact-nickname|friend$, since $account-customer_since|?$, id $contact-id$, costs 5 $$ ($$$$)', 'contact', 1);
SELECT ccrm.render_template('Hi $contact-firstname|Customer$ $contact-lastname|$ of $account-name|no account$, $user-name|nobody$', 'contact', 2);
-- HTML templates escape values, not the author's text or fallbacks
SELECT ccrm.render_template('<b>$account-name$</b> $contact-nickname|<i>friend</i>$', 'contact', 1, html => true);
SELECT ccrm.render_template('<b>$account-name$</b> $contact-nickname|<i>friend</i>$', 'contact', 2, html => true);
SELECT ccrm.render_template('<b>$account-name$</b>', 'contact', 1, html => false);
-- other contexts
SELECT ccrm.render_template('$account-name$ since $account-customer_since$', 'account', 1);
SELECT ccrm.render_template('$lead-firstname$ at $lead-company$', 'lead', 1);
CREATE TABLE public.invoice (no int PRIMARY KEY, customer bigint, total numeric);
INSERT INTO public.invoice VALUES (7, 1, 120.50);
SELECT ccrm.register_entity('invoice', 'public.invoice', 'no', contact_column => 'customer');
SELECT ccrm.render_template('Invoice $invoice-no$ of $invoice-total$ for $contact-firstname$ at $account-name$', 'invoice', 7);
SELECT * FROM ccrm.template_tags('Dear $contact-firstname|Customer$, $account-name$ owes $$10 ($user-name$)');
SELECT * FROM ccrm.template_tags('no tags at all');

-- errors: name the tag and where it is, list what is valid
SELECT * FROM pg_temp.err($q$SELECT ccrm.template_tags('Hello $contact-firstname')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.template_tags('Costs $5 and $6')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.template_tags('Hi $firstname$')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.template_tags('Hi $Contact-firstname$')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.template_tags('Hi $contact-$')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.template_tags('Hi $-firstname$')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.template_tags('Hi $contact-first name$')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.template_tags('Hi $contact-nosuch$')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.template_tags('Hi $customer-firstname$')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.template_tags('Hi $contact-firstname$', 'account')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.template_tags('Hi $contact-firstname$', 'lead')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.template_tags('Hi äö $contact-nosuch$')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.template_tags('Hi', 'user')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.template_tags('Hi', 'nosuch')$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.render_template('Hi', 'contact', 99)$q$);
SELECT * FROM pg_temp.err($q$SELECT ccrm.render_template('Hi', 'contact', NULL)$q$);

DROP EXTENSION ccrm CASCADE;
DROP TABLE public.invoice;

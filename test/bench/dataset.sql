-- Deterministic bench dataset: 1,000 users, 200,000 accounts, 1,000,000
-- contacts.  Values derive from the row number only; dates are relative to
-- the load time, so relative filters select the same share on any day.
CREATE EXTENSION ccrm;
SELECT ccrm.define_field('contact', 'score', 'integer');
SELECT ccrm.define_field('contact', 'last_contacted', 'date');
SELECT ccrm.define_field('account', 'last_contacted', 'date');

INSERT INTO ccrm.crm_user (username, firstname, lastname, email, mobile, timezone)
SELECT 'user' || i,
       (ARRAY['Anna','Ben','Carla','Dan','Eeva','Fredrik','Greta','Hannu','Ida','Jussi'])[1 + i % 10],
       (ARRAY['Korhonen','Virtanen','Mäkinen','Nieminen','Schmidt','Larsson','Popescu'])[1 + i % 7],
       'user' || i || '@example.com',
       '+358 50 ' || lpad(i::text, 7, '0'),
       CASE WHEN i % 4 = 0 THEN 'Europe/Berlin' ELSE 'Europe/Helsinki' END
  FROM generate_series(1, 1000) i;

INSERT INTO ccrm.account (name, email, phone, industry, city, country, owner_id, created_at, updated_at)
SELECT 'Account ' || i || (ARRAY[' Oy', ' AB', ' GmbH'])[1 + i % 3],
       'info@account' || i || '.example',
       '+358 9 ' || lpad(i::text, 7, '0'),
       (ARRAY['retail','energy','software','logistics','health'])[1 + i % 5],
       (ARRAY['Helsinki','Espoo','Tampere','Stockholm','Berlin'])[1 + i % 5],
       (ARRAY['FI','FI','FI','SE','DE'])[1 + i % 5],
       1 + i % 1000,
       now() - ((i % 700) || ' days')::interval,
       now() - ((i % 700) || ' days')::interval
  FROM generate_series(1, 200000) i;

INSERT INTO ccrm.contact (account_id, owner_id, firstname, lastname, title, email, phone, mobile,
                          city, country, email_opt_out, sms_opt_out, attrs, created_at, updated_at)
SELECT 1 + (i::bigint * 7919) % 200000,
       CASE WHEN i % 50 = 0 THEN NULL ELSE 1 + (i::bigint * 31) % 1000 END,
       (ARRAY['Aino','Eino','Liisa','Matti','Sofia','Lars','Karin','Jonas','Maria','Ion'])[1 + i % 10],
       (ARRAY['Korhonen','Virtanen','Mäkinen','Nieminen','Schmidt','Larsson','Popescu','Lahti'])[1 + (i / 10) % 8],
       (ARRAY['CEO','CTO','Buyer','Engineer',NULL])[1 + i % 5],
       'contact' || i || '@example.com',
       '+358 9 ' || lpad(i::text, 7, '0'),
       '+358 40 ' || lpad(i::text, 7, '0'),
       (ARRAY['Helsinki','Espoo','Tampere','Turku','Oulu'])[1 + (i / 10) % 5],
       (ARRAY['FI','FI','SE','NO','DK','DE','DE','EE','FR','NL'])[1 + i % 10],
       i % 7 = 0,
       i % 11 = 0,
       jsonb_build_object('score', i % 100),
       now() - ((i % 400) || ' days')::interval,
       now() - ((i % 400) || ' days')::interval
  FROM generate_series(1, 1000000) i;

VACUUM ANALYZE;

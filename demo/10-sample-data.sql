-- ccrm demo, part 1: a small, deterministic CRM.
\echo
\echo '== ccrm demo: sample CRM data =='
\o /dev/null
CREATE EXTENSION IF NOT EXISTS ccrm;
SELECT ccrm.set_setting('time_zone', 'Europe/Helsinki');

-- custom fields live in attrs and are type-checked on write
SELECT ccrm.define_field('contact', 'payment_plan', 'boolean');
SELECT ccrm.define_field('contact', 'last_contacted', 'date');
SELECT ccrm.define_field('account', 'customer_since', 'date');
SELECT ccrm.define_field('account', 'annual_revenue', 'numeric');

INSERT INTO ccrm.crm_user (username, firstname, lastname, email, mobile, timezone) VALUES
    ('anna',   'Anna',   'Korhonen', 'anna@example.com',   '+358 50 111 0001', 'Europe/Helsinki'),
    ('mikko',  'Mikko',  'Virtanen', 'mikko@example.com',  '+358 50 111 0002', 'Europe/Helsinki'),
    ('sofia',  'Sofia',  'Lind',     'sofia@example.com',  '+46 70 111 0003',  'Europe/Stockholm'),
    ('jonas',  'Jonas',  'Weber',    'jonas@example.com',  '+49 151 111 0004', 'Europe/Berlin'),
    ('helena', 'Helena', 'Mäkinen',  'helena@example.com', '+358 50 111 0005', NULL);

INSERT INTO ccrm.account (name, email, phone, industry, city, country, owner_id, attrs)
SELECT a.name, a.email, a.phone, a.industry, a.city, a.country,
       (SELECT id FROM ccrm.crm_user WHERE username = a.owner),
       jsonb_build_object('customer_since', a.since, 'annual_revenue', a.revenue)
  FROM (VALUES
    ('Aalto Rakennus Oy',   'info@aalto.example',   '+358 9 100 1000', 'construction', 'Helsinki',  'FI', 'anna',  '2015-03-01', 2400000),
    ('Bergström AB',        'info@bergstrom.example','+46 8 100 2000', 'retail',       'Stockholm', 'SE', 'sofia', '2019-06-15',  800000),
    ('Kivi Energia Oy',     'info@kivi.example',    '+358 3 100 3000', 'energy',       'Tampere',   'FI', 'mikko', '2012-01-20', 9100000),
    ('Nordlicht GmbH',      'info@nordlicht.example','+49 30 100 4000','software',     'Berlin',    'DE', 'jonas', '2021-09-01', 1500000),
    ('Sataman Kala Oy',     'info@kala.example',    '+358 2 100 5000', 'food',         'Turku',     'FI', 'anna',  '2018-04-11',  350000),
    ('Oulun Softa Oy',      'info@softa.example',   '+358 8 100 6000', 'software',     'Oulu',      'FI', 'mikko', '2022-02-02',  620000),
    ('Espoon Logistiikka Oy','info@logi.example',   '+358 9 100 7000', 'logistics',    'Espoo',     'FI', 'helena','2016-08-30', 4300000),
    ('Malmö Design AB',     'info@malmo.example',   '+46 40 100 8000', 'design',       'Malmö',     'SE', 'sofia', '2020-10-10',  270000)
  ) AS a(name, email, phone, industry, city, country, owner, since, revenue);

-- three contacts per account; every fifth has a payment plan, every seventh opted out of email
INSERT INTO ccrm.contact (account_id, owner_id, firstname, lastname, title, email, phone, mobile,
                          city, country, email_opt_out, attrs)
SELECT a.id,
       CASE WHEN n = 3 THEN NULL ELSE a.owner_id END,
       (ARRAY['Aino','Eino','Liisa','Matti','Sofia','Lars','Karin','Jonas'])[1 + (a.id * 3 + n) % 8],
       (ARRAY['Laine','Heikkinen','Koskinen','Järvinen','Berg','Ström','Fischer','Lehto'])[1 + (a.id + n * 5) % 8],
       (ARRAY['CEO','CFO','Buyer'])[n],
       lower((ARRAY['aino','eino','liisa','matti','sofia','lars','karin','jonas'])[1 + (a.id * 3 + n) % 8])
           || '.' || a.id || n || '@' || split_part(a.email, '@', 2),
       a.phone, '+358 40 ' || lpad((a.id * 10 + n)::text, 7, '0'),
       a.city, a.country,
       (a.id * 3 + n) % 7 = 0,
       jsonb_build_object('payment_plan', (a.id * 3 + n) % 5 = 0)
  FROM ccrm.account a CROSS JOIN generate_series(1, 3) n
 ORDER BY a.id, n;

-- a call logged last week for some contacts
INSERT INTO ccrm.activity (kind, subject, user_id, contact_id, account_id, starts_at, ends_at, status)
SELECT 'call', 'Follow-up call', c.owner_id, c.id, c.account_id,
       date_trunc('day', now()) - interval '7 days' + interval '10 hours',
       date_trunc('day', now()) - interval '7 days' + interval '10 hours 30 minutes', 'done'
  FROM ccrm.contact c WHERE c.id % 4 = 0 AND c.owner_id IS NOT NULL;

-- a table of the application's own, plugged in as an entity
CREATE TABLE public.invoice (
    id         integer PRIMARY KEY,
    contact_id bigint REFERENCES ccrm.contact,
    account_id bigint REFERENCES ccrm.account,
    amount     numeric(12,2) NOT NULL,
    due_on     date NOT NULL,
    paid       boolean NOT NULL DEFAULT false,
    issued_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO public.invoice (id, contact_id, account_id, amount, due_on, paid)
SELECT 1000 + c.id, c.id, c.account_id, 100 + (c.id * 37) % 900,
       current_date - ((c.id * 11) % 60 - 20)::integer, c.id % 3 = 0
  FROM ccrm.contact c WHERE c.id % 2 = 1;
SELECT ccrm.register_entity('invoice', 'public.invoice', 'id',
                            contact_column => 'contact_id', account_column => 'account_id',
                            created_column => 'issued_at');

\o
\echo
\echo 'Users, accounts, contacts, activities, invoices:'
SELECT (SELECT count(*) FROM ccrm.crm_user) AS users,
       (SELECT count(*) FROM ccrm.account)  AS accounts,
       (SELECT count(*) FROM ccrm.contact)  AS contacts,
       (SELECT count(*) FROM ccrm.activity) AS activities,
       (SELECT count(*) FROM public.invoice) AS invoices;

--
-- admin: cobalt_set_client and cobalt_add_account.
--
-- The PL/pgSQL CONTEXT lines ("... line N at RAISE") say nothing about the
-- contract; the secret is checked against them separately below.
\set SHOW_CONTEXT never

-- What "operations" set up.
SELECT client_id, client_secret FROM cobalt.client;

--
-- cobalt_set_client: bad credentials are refused, and the stored ones are
-- left alone.
--
SELECT cobalt_set_client(NULL, 'regress-secret-1');
SELECT cobalt_set_client('regress-id-1', NULL);
SELECT cobalt_set_client(NULL, NULL);
SELECT cobalt_set_client('', 'regress-secret-1');
SELECT cobalt_set_client('regress-id-1', '');
-- Control characters (they would end up in an HTTP header).
SELECT cobalt_set_client(E'regress-id-1\n', 'regress-secret-1');
SELECT cobalt_set_client('regress-id-1', E'regress-SECRET-xyz\n');
SELECT cobalt_set_client('regress-id-1', E'regress-SECRET-xyz\r\nX-Injected: 1');
SELECT cobalt_set_client('regress-id-1', E'regress\tSECRET-xyz');
SELECT cobalt_set_client('regress-id-1', E'regress-SECRET-xyz\x7f');
-- Too long.
SELECT cobalt_set_client('regress-id-1', repeat('S', 501));
SELECT cobalt_set_client(repeat('i', 501), 'regress-secret-1');

SELECT client_id, client_secret FROM cobalt.client;

-- The secret never appears in the error: not in the message, detail, hint
-- or context.  (The helpers pass the values as variables: the statement
-- text they run, which an error context would quote, holds no value.)
CREATE FUNCTION pg_temp.set_client_error(id text, secret text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    m text; d text; h text; c text;
BEGIN
    PERFORM cobalt_set_client(id, secret);
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL,
                            h = PG_EXCEPTION_HINT, c = PG_EXCEPTION_CONTEXT;
    RETURN concat_ws(' | ', m, d, h, c);
END
$$;
CREATE FUNCTION pg_temp.add_account_error(account text, token text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    m text; d text; h text; c text;
BEGIN
    PERFORM cobalt_add_account(account, token);
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL,
                            h = PG_EXCEPTION_HINT, c = PG_EXCEPTION_CONTEXT;
    RETURN concat_ws(' | ', m, d, h, c);
END
$$;
-- The whole error text once, to show what is checked.
SELECT regexp_replace(pg_temp.set_client_error('regress-id-1', E'regress-SECRET-xyz\n'),
                      'pg_temp_\d+', 'pg_temp', 'g') AS error_text;
SELECT n AS secret_case,
       strpos(pg_temp.set_client_error('regress-id-1', s), 'SECRET-xyz') = 0 AS secret_not_shown,
       strpos(pg_temp.set_client_error(s, 'regress-secret-1'), 'SECRET-xyz') = 0 AS id_not_shown
FROM unnest(ARRAY[E'regress-SECRET-xyz\n', E'regress-SECRET-xyz\r\nX-Injected: 1',
                  E'regress\tSECRET-xyz', E'regress-SECRET-xyz\x01',
                  'SECRET-xyz' || repeat('S', 500)]) WITH ORDINALITY AS u(s, n)
ORDER BY n;
SELECT strpos(pg_temp.set_client_error('', 'SECRET-xyz'), 'SECRET-xyz') = 0 AS secret_not_shown,
       strpos(pg_temp.set_client_error(NULL, 'SECRET-xyz'), 'SECRET-xyz') = 0 AS secret_not_shown_2;
SELECT client_id, client_secret FROM cobalt.client;

--
-- Replacing the credentials: still one row.
--
SELECT cobalt_set_client('regress-id-2', 'regress-secret-2');
SELECT count(*) AS rows, min(client_id) AS client_id, min(client_secret) AS client_secret
FROM cobalt.client;
SELECT cobalt_set_client('regress-id-3', 'regress-secret-3 with spaces & symbols: +/=');
SELECT count(*) AS rows, min(client_id) AS client_id, min(client_secret) AS client_secret
FROM cobalt.client;
-- 500 characters is allowed.
SELECT cobalt_set_client(repeat('i', 500), repeat('s', 500));
SELECT count(*) AS rows, length(min(client_id)) AS id_length,
       length(min(client_secret)) AS secret_length
FROM cobalt.client;
-- The table holds one row at most, even when written directly.
INSERT INTO cobalt.client (client_id, client_secret) VALUES ('x', 'y');
INSERT INTO cobalt.client (singleton, client_id, client_secret, updated_at)
VALUES (false, 'x', 'y', '2000-01-01 00:00:00+00');
-- A failed transaction changes nothing.
BEGIN;
SELECT cobalt_set_client('regress-id-4', 'regress-secret-4');
ROLLBACK;
SELECT count(*) AS rows, length(min(client_id)) AS id_length FROM cobalt.client;
SELECT cobalt_set_client('regress-client-id', 'regress-client-secret');

--
-- cobalt_add_account: bad names and tokens are refused.
--
SELECT account, access_token FROM cobalt.accounts ORDER BY account COLLATE "C";
SELECT cobalt_add_account(NULL, 'token-x');
SELECT cobalt_add_account('', 'token-x');
SELECT cobalt_add_account('-clinic', 'token-x');
SELECT cobalt_add_account('.clinic', 'token-x');
SELECT cobalt_add_account('clinic x', 'token-x');
SELECT cobalt_add_account('clinic/x', 'token-x');
SELECT cobalt_add_account(E'clinic-x\n', 'token-x');
SELECT cobalt_add_account('clinic-ü', 'token-x');
SELECT cobalt_add_account(repeat('a', 201), 'token-x');
SELECT cobalt_add_account('clinic-x', NULL);
SELECT cobalt_add_account('clinic-x', '');
SELECT cobalt_add_account('clinic-x', E'token-x\n');
SELECT cobalt_add_account('clinic-x', E'token\tx');
SELECT cobalt_add_account('clinic-x', repeat('t', 501));
SELECT account, access_token FROM cobalt.accounts ORDER BY account COLLATE "C";
-- The token never appears in the error either.
SELECT strpos(pg_temp.add_account_error('clinic-x', E'TOKEN-xyz\n'), 'TOKEN-xyz') = 0 AS token_not_shown,
       strpos(pg_temp.add_account_error('clinic-x', 'TOKEN-xyz' || repeat('t', 500)), 'TOKEN-xyz') = 0 AS long_token_not_shown,
       strpos(pg_temp.add_account_error('bad name', 'TOKEN-xyz'), 'TOKEN-xyz') = 0 AS token_not_shown_bad_name;

-- Valid names: letters, digits and _ . : @ -, up to 200 characters.
SELECT cobalt_add_account('Clinic_B.2:east@example-org', 'token-x');
SELECT cobalt_add_account('7', 'token-7');
SELECT cobalt_add_account(repeat('a', 200), repeat('t', 500));
SELECT account, length(access_token) AS token_length FROM cobalt.accounts ORDER BY account COLLATE "C";
-- The table's own check refuses bad names written directly.
INSERT INTO cobalt.accounts (account, access_token, created_at, updated_at)
VALUES ('bad name', 'token-x', '2000-01-01 00:00:00+00', '2000-01-01 00:00:00+00');

--
-- Replacing a token: same row, new token, created_at kept.
--
SELECT created_at AS clinic_a_created FROM cobalt.accounts WHERE account = 'clinic-a' \gset
SELECT cobalt_add_account('clinic-a', 'token-a-2');
SELECT account, access_token, created_at = :'clinic_a_created' AS created_at_kept,
       updated_at >= created_at AS updated
FROM cobalt.accounts WHERE account = 'clinic-a';
SELECT count(*) AS clinic_a_rows FROM cobalt.accounts WHERE account = 'clinic-a';
-- Names are case-sensitive: this is another account.
SELECT cobalt_add_account('CLINIC-A', 'token-upper');
SELECT account, access_token FROM cobalt.accounts
WHERE lower(account) = 'clinic-a' ORDER BY account COLLATE "C";

-- The jobs of an account keep working after its token is replaced.
SELECT cobalt_submit('task.create', '{"title": "after token change"}', 'clinic-a') > 0 AS submitted;

-- Clean up the accounts added here.
DELETE FROM cobalt.accounts WHERE account NOT IN ('clinic-a', 'clinic-b');
SELECT account, access_token FROM cobalt.accounts ORDER BY account COLLATE "C";

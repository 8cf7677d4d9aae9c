# cobalt_submit's cached view of the configuration tables (operations,
# client, accounts, grants) follows every change: one made by another
# session once it commits, one made by the same transaction at once.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";
use CobaltTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = start_mock();
my $node = cobalt_node('cache', $mock, conf => "cobalt.database_name = 'elsewhere'\n");    # no worker: jobs stay queued
$node->safe_psql('app', q{
	CREATE ROLE app_c NOLOGIN;
	SELECT cobalt_grant_account('clinic-a', 'app_c');
});

# a long-lived session that submits, with its cache built
my $app = $node->background_psql('app', on_error_stop => 0);
sub app_submit
{
	my ($sql) = @_;
	my $out = $app->query("SET ROLE app_c; $sql; RESET ROLE;");
	my $err = $app->{stderr};
	$app->{stderr} = '';
	return $err =~ /ERROR:\s*(.*)/ ? "ERROR: $1" : $out;
}
like(app_submit("SELECT cobalt_submit('task.create', '{}') > 0"), qr/^t$/m, 'the role submits for its account');

# another session adds an account and grants it: seen once committed
add_account($node, 'clinic-n', 'at_live_new');
like(app_submit("SELECT cobalt_submit('task.create', '{}', 'clinic-n')"), qr/permission denied for cobalt account "clinic-n"/,
	'an account not granted yet is refused');
$node->safe_psql('app', "SELECT cobalt_grant_account('clinic-n', 'app_c')");
like(app_submit("SELECT cobalt_submit('task.create', '{}', 'clinic-n') > 0"), qr/^t$/m, 'granted in another session: accepted');
like(app_submit("SELECT cobalt_submit('task.create', '{}')"), qr/cobalt account must be given when several accounts exist/,
	'with two accounts the account must be given');

# revoked in another session: refused at once
$node->safe_psql('app', "SELECT cobalt_revoke_account('clinic-n', 'app_c')");
like(app_submit("SELECT cobalt_submit('task.create', '{}', 'clinic-n')"), qr/permission denied for cobalt account "clinic-n"/,
	'revoked in another session: refused');
like(app_submit("SELECT cobalt_submit('task.create', '{}') > 0"), qr/^t$/m, 'and its only account is the default again');

# an uncommitted change of another session is not seen
my $admin = $node->background_psql('app');
$admin->query_safe("BEGIN; SELECT cobalt_grant_account('clinic-n', 'app_c');");
like(app_submit("SELECT cobalt_submit('task.create', '{}', 'clinic-n')"), qr/permission denied/,
	'a grant not committed yet is not seen');
$admin->query_safe('ROLLBACK');
$admin->quit;
like(app_submit("SELECT cobalt_submit('task.create', '{}', 'clinic-n')"), qr/permission denied/,
	'nor after it was rolled back');

# operations: a new one, a changed path, a deleted one
$node->safe_psql('app', "INSERT INTO cobalt.operations VALUES ('patient.update', 'PATCH', '/patients/{mrn}', '2 min')");
like(app_submit("SELECT cobalt_submit('patient.update', '{\"mrn\": \"1\"}') > 0"), qr/^t$/m, 'a new operation is accepted');
$node->safe_psql('app', "UPDATE cobalt.operations SET path = '/patients/{patient_id}' WHERE operation = 'patient.update'");
like(app_submit("SELECT cobalt_submit('patient.update', '{\"mrn\": \"1\"}')"), qr/needs field "patient_id"/,
	'a changed path is checked');
$node->safe_psql('app', "DELETE FROM cobalt.operations WHERE operation = 'patient.update'");
like(app_submit("SELECT cobalt_submit('patient.update', '{\"patient_id\": \"1\"}')"), qr/unknown cobalt operation "patient.update"/,
	'a deleted operation is refused');

# the client credentials deleted, then set again
$node->safe_psql('app', 'DELETE FROM cobalt.client');
like(app_submit("SELECT cobalt_submit('task.create', '{}')"), qr/client credentials are not set/, 'credentials deleted: refused');
set_client($node, 'ci_live_test', 'cs_live_test');
like(app_submit("SELECT cobalt_submit('task.create', '{}') > 0"), qr/^t$/m, 'set again: accepted');

# the same transaction sees its own changes at once
is($node->safe_psql('app', q{
	BEGIN;
	INSERT INTO cobalt.accounts (account, access_token) VALUES ('clinic-t', md5(random()::text));
	SELECT cobalt_submit('task.create', '{}', 'clinic-t') > 0;
	DELETE FROM cobalt.accounts WHERE account = 'clinic-t';
	DO $$
	BEGIN
	    PERFORM cobalt_submit('task.create', '{}', 'clinic-t');
	    RAISE EXCEPTION 'submit accepted for a deleted account';
	EXCEPTION WHEN undefined_object THEN
	    NULL;    -- unknown cobalt account: refused, as it should be
	END $$;
	SELECT 'refused after the delete';
	ROLLBACK;}), "t\nrefused after the delete", 'a transaction sees its own changes');

# TRUNCATE is a change too
$node->safe_psql('app', 'TRUNCATE cobalt.account_grants');
like(app_submit("SELECT cobalt_submit('task.create', '{}')"), qr/no cobalt account is granted to role "app_c"/,
	'grants truncated: refused');

$app->quit;
$node->stop;
stop_mock($mock);
done_testing();

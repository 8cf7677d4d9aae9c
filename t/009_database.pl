# The served database may be missing, dropped and created again: the
# launcher waits quietly (no crash loop), the worker never blocks
# DROP DATABASE, and serves again once the database and extension exist.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";
use CobaltTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = start_mock();
my $node = cobalt_node('db', $mock, no_db => 1);

sub worker_count
{
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'cobalt worker'");
}

# no database yet: the launcher waits, nothing crashes
ok(wait_until(sub { $node->safe_psql('postgres',
				"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'cobalt launcher'") == 1 }),
	'the launcher runs');
sleep 3;
is(worker_count(), '0', 'no worker while the database does not exist');
my $log = slurp_file($node->logfile);
like($log, qr/waiting for database "app" to exist/, 'the launcher says what it waits for');
unlike($log, qr/FATAL/, 'and nothing fails meanwhile');

sub setup_app
{
	$node->safe_psql('postgres', 'CREATE DATABASE app');
	$node->safe_psql('app', 'CREATE EXTENSION cobalt');
	set_client($node, 'ci_live_test', 'cs_live_test');
	add_account($node, 'clinic-a', 'at_live_a');
}

setup_app();
ok(wait_until(sub { worker_count() == 1 }, 20), 'the worker starts once the database exists');
my $id = submit($node, 'appointment.create', { mrn => '1' });
is(wait_for_state($node, $id, 'succeeded'), 'succeeded', 'and serves it');

# DROP DATABASE while the worker is connected and busy
submit($node, 'appointment.create', { mrn => '2', _mock => { outcome => 'never' } });
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE app');
is($ret, 0, 'DROP DATABASE is not blocked by the worker') or diag $err;
sleep 3;
is(worker_count(), '0', 'no worker while the database is gone');
my $offset = length($log);
$log = slurp_file($node->logfile);
like($log, qr/stepping aside/, 'the worker stepped aside');
my $fatals = () = substr($log, $offset) =~ /FATAL/g;
is($fatals, 0, 'no crash loop while the database is gone');

# created again: served again
setup_app();
ok(wait_until(sub { worker_count() == 1 }, 20), 'the worker starts again');
$id = submit($node, 'appointment.create', { mrn => '3' });
is(wait_for_state($node, $id, 'succeeded'), 'succeeded', 'and serves the new database');

# ALTER DATABASE ... RENAME is not blocked either
($ret, $out, $err) = $node->psql('postgres', 'ALTER DATABASE app RENAME TO app_old');
is($ret, 0, 'RENAME is not blocked by the worker') or diag $err;
sleep 2;
is(worker_count(), '0', 'no worker for a database by another name');

$node->stop;
stop_mock($mock);
done_testing();

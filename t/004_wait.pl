# cobalt_wait: returns as soon as the worker commits an outcome, returns
# the current state at its own timeout, sleeps in a wait event (no CPU),
# and honours statement_timeout and pg_cancel_backend.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";
use CobaltTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $mock = start_mock();
my $node = cobalt_node('wait', $mock);

# returns at the outcome, long before its own timeout
my $id = submit($node, 'appointment.create', { mrn => '1', _mock => { after_seconds => 1.5 } });
my $t0 = time();
my $res = $node->safe_psql('app',
	"SELECT state, (clock_timestamp() - finished_at) < interval '500 ms' FROM cobalt_wait($id, '60 s')");
my $elapsed = time() - $t0;
is($res, 'succeeded|t', 'cobalt_wait returns the outcome right after the worker commits it');
ok($elapsed < 10, sprintf('and long before its timeout (%.2f s)', $elapsed));

# returns the outcome of a failure, with its details
$id = submit($node, 'appointment.create', { mrn => '1', _mock => { outcome => 'failure' } });
is($node->safe_psql('app', "SELECT state, event_type, error IS NOT NULL FROM cobalt_wait($id)"),
	'failed|appointment.failed|t', 'cobalt_wait returns a failure with its details');

# at its own timeout: the current state
$id = submit($node, 'appointment.create', { mrn => '1', _mock => { outcome => 'never' } });
$t0 = time();
is($node->safe_psql('app', "SELECT state FROM cobalt_wait($id, '1.5 s')"), 'polling',
	'at its timeout cobalt_wait returns the current state');
$elapsed = time() - $t0;
ok($elapsed >= 1.4, sprintf('after waiting the whole timeout (%.2f s)', $elapsed));

# while waiting it sleeps in a wait event
my $h = $node->background_psql('app');
$h->query_until(qr/go/, "\\echo go\nSELECT state FROM cobalt_wait($id, '30 s');\n");
ok(wait_until(sub {
		$node->safe_psql('app', q{SELECT count(*) FROM pg_stat_activity
			WHERE query LIKE 'SELECT state FROM cobalt_wait%' AND wait_event_type = 'Extension'}) == 1 }, 10),
	'a waiting session sleeps in a wait event');

# pg_cancel_backend interrupts it
my $t1 = time();
$node->safe_psql('app', q{SELECT pg_cancel_backend(pid) FROM pg_stat_activity
	WHERE query LIKE 'SELECT state FROM cobalt_wait%' AND pid <> pg_backend_pid()});
ok(wait_until(sub {
		$node->safe_psql('app', q{SELECT count(*) FROM pg_stat_activity
			WHERE query LIKE 'SELECT state FROM cobalt_wait%' AND state = 'active'}) == 0 }, 5),
	'pg_cancel_backend ends the wait');
ok(time() - $t1 < 5, 'promptly');
eval { $h->quit };    # psql has already exited on the error

# statement_timeout interrupts it
my ($ret, $out, $err) = $node->psql('app',
	"SET statement_timeout = '300ms'; SELECT state FROM cobalt_wait($id, '30 s');");
isnt($ret, 0, 'statement_timeout ends the wait with an error');
like($err, qr/statement timeout/, 'with the statement timeout message');

# a job already final returns at once
$t0 = time();
$id = submit($node, 'appointment.create', { mrn => '1' });
$node->safe_psql('app', "SELECT cobalt_wait($id)");
$t0 = time();
is($node->safe_psql('app', "SELECT state FROM cobalt_wait($id, '60 s')"), 'succeeded', 'final job');
ok(time() - $t0 < 5, 'returned at once');

$node->stop;
stop_mock($mock);
done_testing();

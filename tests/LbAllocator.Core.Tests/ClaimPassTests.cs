using LbAllocator.Core;

namespace LbAllocator.Core.Tests;

/// <summary>
/// At a start (or a new leader) and at a pool edit, every validly held address is claimed before any Service is
/// served: the same Services in any order give one result, and no Service loses a valid address to another.
/// </summary>
public class ClaimPassTests
{
    private static Pool[] Pools(params PoolSpec[] specs)
    {
        var config = ConfigValidator.Validate(specs, []);
        Assert.Empty(config.Problems);
        return [.. config.Pools];
    }

    private static ServiceInfo Svc(string name, string[]? holds = null, string? policy = null, string[]? families = null,
        Dictionary<string, string>? annotations = null) => new()
    {
        Namespace = "default",
        Name = name,
        IngressIps = holds ?? [],
        IpFamilyPolicy = policy,
        IpFamilies = families ?? [],
        Annotations = annotations ?? [],
        Ports = [new ServicePort("TCP", 80)],
    };

    /// <summary>Each Service's outcome by name, as "kind addresses" (the pool and reason aside).</summary>
    private static Dictionary<string, string> Start(Pool[] pools, IEnumerable<ServiceInfo> services) =>
        new Allocator(pools: pools).ReconcileAll([.. services])
            .ToDictionary(o => o.Name, o => $"{o.GetType().Name} {string.Join(",", o.Ips)}".TrimEnd());

    private static IEnumerable<List<T>> Permutations<T>(IReadOnlyList<T> items)
    {
        if (items.Count <= 1)
        {
            yield return [.. items];
            yield break;
        }

        for (var i = 0; i < items.Count; i++)
        {
            var rest = items.Where((_, j) => j != i).ToList();
            foreach (var tail in Permutations(rest))
            {
                yield return [items[i], .. tail];
            }
        }
    }

    [Fact]
    public void A_stale_holder_listed_first_takes_no_address_that_another_service_holds()
    {
        // The issue's case: "stale" holds an address in no pool and comes first; it used to take 203.0.113.0 from "old".
        var pools = Pools(new PoolSpec("p", ["203.0.113.0/29"]));
        ServiceInfo[] services =
        [
            Svc("stale", ["198.51.100.9"]),
            Svc("new1"),
            Svc("old", ["203.0.113.0"]),
            Svc("old2", ["203.0.113.5"]),
        ];

        var orders = Permutations(services).ToList();
        Assert.Equal(24, orders.Count);
        foreach (var order in orders)
        {
            var got = Start(pools, order);
            var names = string.Join(" ", order.Select(s => s.Name));

            Assert.True(got["old"] == "Assigned 203.0.113.0", names);
            Assert.True(got["old2"] == "Assigned 203.0.113.5", names);
            // The two without a valid address share the rest, first come first served in the order given.
            var waiting = order.Where(s => s.Name is "stale" or "new1").Select(s => got[s.Name]).ToList();
            Assert.True(waiting.SequenceEqual(["Assigned 203.0.113.1", "Assigned 203.0.113.2"]), names);
        }
    }

    [Fact]
    public void A_PreferDualStack_service_holding_only_IPv4_tops_up_with_an_IPv6_address_nobody_holds()
    {
        var pools = Pools(new PoolSpec("dual", ["192.0.2.0/29", "2001:db8::/125"]));
        ServiceInfo[] services =
        [
            Svc("prefer", ["192.0.2.0"], "PreferDualStack", ["IPv4", "IPv6"]),
            Svc("v6", ["2001:db8::"], "SingleStack", ["IPv6"]),
        ];

        foreach (var order in Permutations(services))
        {
            var got = Start(pools, order);

            Assert.Equal("Assigned 2001:db8::", got["v6"]);
            Assert.Equal("Assigned 192.0.2.0,2001:db8::1", got["prefer"]);
        }
    }

    [Fact]
    public void A_service_edited_while_no_controller_led_to_request_another_ones_address_is_refused_as_in_steady_state()
    {
        var pools = Pools(new PoolSpec("p", ["192.0.2.0/29"]));
        var holder = Svc("holder", ["192.0.2.1"]);
        var edited = Svc("edited", ["192.0.2.2"], annotations: new() { [ServiceAnnotations.LoadBalancerIPs] = "192.0.2.1" });
        const string Refusal = "IP 192.0.2.1 is used by default/holder and cannot be shared: this Service has no lballocator.io/allow-shared-ip annotation";

        // Steady state: the holder is served, then the edit arrives.
        var steady = new Allocator(pools: pools);
        steady.Reconcile(holder);
        var refused = Assert.IsType<AllocationOutcome.Pending>(steady.Reconcile(edited));
        Assert.Equal(Refusal, refused.Reason);

        foreach (var order in Permutations([holder, edited]))
        {
            var outcomes = new Allocator(pools: pools).ReconcileAll(order).ToDictionary(o => o.Name);

            Assert.Equal("192.0.2.1", string.Join(",", outcomes["holder"].Ips));
            Assert.Equal(Refusal, Assert.IsType<AllocationOutcome.Pending>(outcomes["edited"]).Reason);
        }
    }

    [Fact]
    public void Two_services_showing_one_address_they_may_not_share_settle_the_same_in_any_order()
    {
        // Only one can keep it; which one must not depend on the cache's order (the lower key does).
        var pools = Pools(new PoolSpec("p", ["192.0.2.0/29"]));
        ServiceInfo[] services = [Svc("b", ["192.0.2.3"]), Svc("a", ["192.0.2.3"]), Svc("c", ["192.0.2.4"])];

        foreach (var order in Permutations(services))
        {
            var got = Start(pools, order);

            Assert.Equal("Assigned 192.0.2.3", got["a"]);
            Assert.Equal("Assigned 192.0.2.0", got["b"]);
            Assert.Equal("Assigned 192.0.2.4", got["c"]);
        }
    }

    [Fact]
    public void A_mixed_cluster_restarts_to_one_result_whatever_the_order()
    {
        // Holders of valid addresses (both families, PreferDualStack holding one family), holders of addresses in
        // no pool, Services holding nothing, and one edited to request a held address; shuffled with fixed seeds.
        var pools = Pools(new PoolSpec("p", ["198.51.100.0/26", "2001:db8::/122"]));
        var services = new List<ServiceInfo>();
        for (var i = 0; i < 10; i++)
        {
            services.Add(Svc($"v4-{i}", [$"198.51.100.{(i * 5) + 3}"]));
            services.Add(Svc($"v6-{i}", [$"2001:db8::{(i * 3) + 1:x}"], "SingleStack", ["IPv6"]));
            services.Add(Svc($"prefer-{i}", [$"198.51.100.{(i * 5) + 4}"], "PreferDualStack", ["IPv4", "IPv6"]));
            services.Add(Svc($"stale-{i}", [$"203.0.113.{i}"]));
            services.Add(Svc($"new-{i}"));
        }

        services.Add(Svc("edited", ["198.51.100.60"], annotations: new() { [ServiceAnnotations.LoadBalancerIPs] = "198.51.100.3" }));
        Dictionary<string, string>? first = null;
        for (var seed = 1; seed <= 20; seed++)
        {
            var order = services.ToArray();
            new Random(seed).Shuffle(order);
            var got = Start(pools, order);

            for (var i = 0; i < 10; i++)
            {
                Assert.Equal($"Assigned 198.51.100.{(i * 5) + 3}", got[$"v4-{i}"]);
                Assert.Equal($"Assigned 2001:db8::{(i * 3) + 1:x}", got[$"v6-{i}"]);
                Assert.StartsWith($"Assigned 198.51.100.{(i * 5) + 4},2001:db8::", got[$"prefer-{i}"], StringComparison.Ordinal);
            }

            Assert.Equal("Pending", got["edited"]);
            var addresses = got.Values.SelectMany(v => v.Split(' ').Skip(1)).SelectMany(a => a.Split(',')).ToList();
            Assert.Equal(addresses.Count, addresses.Distinct().Count());
            // Holders' outcomes are one result; who of the others gets which new address follows the order given.
            var held = got.Where(kv => !kv.Key.StartsWith("stale-", StringComparison.Ordinal) && !kv.Key.StartsWith("new-", StringComparison.Ordinal)
                && !kv.Key.StartsWith("prefer-", StringComparison.Ordinal)).ToDictionary();
            first ??= held;
            Assert.Equal(first, held);
        }
    }

    [Fact]
    public void A_pool_edit_claims_what_is_still_valid_before_reallocating_what_is_not()
    {
        // "a" (key first) loses its IPv6 address to the edit; "b" loses its IPv4 one but keeps its IPv6 address,
        // which "a" must not take while "b" is being settled.
        var allocator = new Allocator(pools: Pools(new PoolSpec("dual", ["192.0.2.0/30", "2001:db8::/125"])));
        allocator.ReconcileAll([
            Svc("a", ["2001:db8::5"], "SingleStack", ["IPv6"]),
            Svc("b", ["192.0.2.1", "2001:db8::"], "PreferDualStack", ["IPv4", "IPv6"]),
        ]);

        var changes = allocator.SetPools(Pools(new PoolSpec("dual", ["192.0.2.2/31", "2001:db8::/126"])));

        Assert.True(allocator.TryGetAssignment("default", "b", out var b, out _));
        Assert.True(allocator.TryGetAssignment("default", "a", out var a, out _));
        Assert.Equal("192.0.2.2,2001:db8::", string.Join(",", b));
        Assert.Equal("2001:db8::1", string.Join(",", a));
        Assert.Equal(["a", "b"], changes.Select(c => c.Name).Order(StringComparer.Ordinal));
    }
}

using LbAllocator.Core;

namespace LbAllocator.Core.Tests;

/// <summary>The allocation rules, one table per rule, through the public Allocator API.</summary>
public class EngineRulesTests
{
    private static Pool[] Pools(params PoolSpec[] specs)
    {
        var config = ConfigValidator.Validate(specs, []);
        Assert.Empty(config.Problems);
        return [.. config.Pools];
    }

    private static ServiceInfo Svc(string name, string ns = "default", Dictionary<string, string>? annotations = null,
        string[]? families = null, string? policy = null, int port = 80, string protocol = "TCP") => new()
    {
        Namespace = ns,
        Name = name,
        Annotations = annotations ?? [],
        IpFamilies = families ?? [],
        IpFamilyPolicy = policy,
        Ports = [new ServicePort(protocol, port)],
    };

    private static string Ips(AllocationOutcome r) => string.Join(",", r.Ips);

    [Fact]
    public void Lowest_free_address_in_declaration_order_then_exhaustion_with_counts()
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("web", ["192.0.2.10-192.0.2.11", "192.0.2.1"])));

        var got = Enumerable.Range(0, 4).Select(i => allocator.Reconcile(Svc($"s{i}"))).ToList();

        Assert.Equal(["192.0.2.10", "192.0.2.11", "192.0.2.1", ""], got.Select(Ips));
        Assert.Equal("no available IPs in pool \"web\" (3 of 3 assigned)", got[3].Problem);
    }

    [Fact]
    public void Deleting_a_service_gives_its_address_to_the_first_waiting_service()
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("p", ["192.0.2.1"])));
        allocator.Reconcile(Svc("owner"));
        allocator.Reconcile(Svc("first-waiter"));
        allocator.Reconcile(Svc("second-waiter"));

        Assert.True(allocator.Release("default", "owner"));
        var retried = allocator.RetryPending();

        var winner = Assert.Single(retried);
        Assert.Equal("first-waiter", winner.Name);
        Assert.Equal("192.0.2.1", Ips(winner));
    }

    [Theory]
    [InlineData(null, null, true)]
    [InlineData("example.com/lb", null, false)]
    [InlineData("example.com/lb", "example.com/lb", true)]
    [InlineData(null, "example.com/lb", false)]
    [InlineData("example.com/other", "example.com/lb", false)]
    public void Only_the_configured_load_balancer_class_is_handled(string? serviceClass, string? configured, bool handled)
    {
        var allocator = new Allocator(new AllocatorOptions { LoadBalancerClass = configured }, Pools(new PoolSpec("p", ["192.0.2.0/24"])));

        var result = allocator.Reconcile(Svc("s") with { LoadBalancerClass = serviceClass });

        Assert.Equal(handled, result is not AllocationOutcome.NotOurs);
        Assert.Equal(handled ? 1 : 0, result.Ips.Count);
    }

    [Fact]
    public void Changing_the_type_away_from_LoadBalancer_releases_the_address()
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("p", ["192.0.2.0/30"])));
        allocator.Reconcile(Svc("s"));

        var result = allocator.Reconcile(Svc("s") with { Type = "ClusterIP" });

        var released = Assert.IsType<AllocationOutcome.Released>(result);
        Assert.Equal("192.0.2.0", string.Join(",", released.Freed));
        Assert.True(result.Changed);
        Assert.Equal(0u, (uint)allocator.GetStats("p").AssignedIPv4);
    }

    [Theory]
    [InlineData("192.0.2.0/24", true, "192.0.2.1")]
    [InlineData("192.0.2.255-192.0.3.1", true, "192.0.3.1")]
    [InlineData("192.0.2.255-192.0.3.1", false, "192.0.2.255")]
    public void AvoidBuggyIPs_skips_addresses_ending_in_0_and_255(string range, bool avoid, string first)
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("p", [range], AvoidBuggyIPs: avoid)));

        Assert.Equal(first, Ips(allocator.Reconcile(Svc("s"))));
    }

    public static TheoryData<Dictionary<string, string>, string?, string> RequestCases => new()
    {
        { new() { [ServiceAnnotations.LoadBalancerIPs] = "192.0.2.7" }, null, "192.0.2.7" },
        { new(), "198.51.100.3", "198.51.100.3" },
        { new() { [ServiceAnnotations.LoadBalancerIPs] = "192.0.2.9" }, null, "requested IP 192.0.2.9 is not in any pool" },
        { new() { [ServiceAnnotations.LoadBalancerIPs] = "192.0.2.7" }, "192.0.2.7", "both annotation lballocator.io/loadBalancerIPs and spec.loadBalancerIP are set" },
        { new() { [ServiceAnnotations.LoadBalancerIPs] = "192.0.2.7,192.0.2.8" }, null, "more than one IPv4 address" },
        { new() { [ServiceAnnotations.LoadBalancerIPs] = "2001:db8::1" }, null, "requested IP 2001:db8::1 is IPv6 but the Service is IPv4 single-stack" },
        { new() { [ServiceAnnotations.AddressPool] = "manual" }, null, "198.51.100.0" },
        { new() { [ServiceAnnotations.AddressPool] = "nope" }, null, "IPAddressPool \"nope\" named by annotation lballocator.io/address-pool does not exist" },
    };

    [Theory]
    [MemberData(nameof(RequestCases))]
    public void Requested_addresses_and_pools(Dictionary<string, string> annotations, string? loadBalancerIP, string expected)
    {
        // "manual" has autoAssign false: it serves requests only.
        var allocator = new Allocator(pools: Pools(
            new PoolSpec("auto", ["192.0.2.0/29"]),
            new PoolSpec("manual", ["198.51.100.0/29"], AutoAssign: false)));

        var result = allocator.Reconcile(Svc("s", annotations: annotations) with { LoadBalancerIP = loadBalancerIP });

        Assert.Contains(expected, result.Ips.Count > 0 ? Ips(result) : result.Problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("default", "", "low-priority")]
    [InlineData("team-a", "", "team-a-only")]
    [InlineData("other", "gold", "by-label")]
    [InlineData("other", "", "low-priority")]
    public void Pools_are_tried_by_priority_then_without_serviceAllocation_then_by_name(string ns, string tier, string expectedPool)
    {
        var allocator = new Allocator(pools: Pools(
            new PoolSpec("zz-no-allocation", ["203.0.113.0/29"]),
            new PoolSpec("low-priority", ["192.0.2.0/29"], ServiceAllocation: new ServiceAllocationSpec(Priority: 50)),
            new PoolSpec("team-a-only", ["192.0.2.8/29"], ServiceAllocation: new ServiceAllocationSpec(Priority: 10, Namespaces: ["team-a"])),
            new PoolSpec("by-label", ["192.0.2.16/29"], ServiceAllocation: new ServiceAllocationSpec(
                Priority: 20,
                NamespaceSelectors: [new LabelSelectorSpec(MatchExpressions: [new LabelRequirementSpec("tier", "In", ["gold"])])]))));

        var labels = tier.Length > 0 ? new Dictionary<string, string> { ["tier"] = tier } : [];
        var result = allocator.Reconcile(Svc("s", ns) with { NamespaceLabels = labels });

        Assert.Equal(expectedPool, result.Pool);
    }

    [Theory]
    [InlineData("SingleStack", new[] { "IPv6" }, "2001:db8::")]
    [InlineData("PreferDualStack", new[] { "IPv4", "IPv6" }, "192.0.2.0,2001:db8::")]
    [InlineData("RequireDualStack", new[] { "IPv6", "IPv4" }, "2001:db8::,192.0.2.0")]
    public void Dual_stack_takes_both_families_from_one_pool(string policy, string[] families, string expected)
    {
        var allocator = new Allocator(pools: Pools(
            new PoolSpec("a-v4-only", ["198.51.100.0/29"]),
            new PoolSpec("dual", ["192.0.2.0/29", "2001:db8::/125"])));

        var result = allocator.Reconcile(Svc("s", families: families, policy: policy));

        Assert.Equal(expected, Ips(result));
        Assert.Equal("dual", result.Pool);
    }

    [Fact]
    public void PreferDualStack_falls_back_to_the_first_family_and_RequireDualStack_fails()
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("v4", ["192.0.2.0/29"])));

        var prefer = allocator.Reconcile(Svc("prefer", families: ["IPv4", "IPv6"], policy: "PreferDualStack"));
        var require = allocator.Reconcile(Svc("require", families: ["IPv4", "IPv6"], policy: "RequireDualStack"));

        Assert.Equal("192.0.2.0", Ips(prefer));
        Assert.Empty(require.Ips);
        Assert.Equal("pool \"v4\" has no IPv6 addresses", require.Problem);
    }

    // The cases (MetalLB's allocator tables): pool3 = 1000::/127 only.
    [Theory]
    [InlineData("named", "pool3")]
    [InlineData("only IPv6 autoAssign pools", null)]
    public void PreferDualStack_settles_for_its_second_family_when_no_pool_has_the_first(string why, string? named)
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("pool3", ["1000::/127"]), new PoolSpec("v4-manual", ["192.0.2.0/29"], AutoAssign: false)));
        var annotations = named is null ? [] : new Dictionary<string, string> { [ServiceAnnotations.AddressPool] = named };

        var result = allocator.Reconcile(Svc("s", annotations: annotations, families: ["IPv4", "IPv6"], policy: "PreferDualStack"));

        var assigned = Assert.IsType<AllocationOutcome.Assigned>(result);
        Assert.True(Ips(assigned) == "1000::", why);
        Assert.Equal("pool3", assigned.FromPool);
    }

    [Fact]
    public void PreferDualStack_takes_the_first_listed_family_an_admitting_pool_can_give()
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("a-v4", ["192.0.2.7"]), new PoolSpec("b-v6", ["2001:db8::/126"])));

        var sixFirst = allocator.Reconcile(Svc("six-first", families: ["IPv6", "IPv4"], policy: "PreferDualStack"));
        var fourFirst = allocator.Reconcile(Svc("four-first", families: ["IPv4", "IPv6"], policy: "PreferDualStack"));
        // IPv4 is now used up: the next one settles for IPv6 rather than wait.
        var fourGone = allocator.Reconcile(Svc("four-gone", families: ["IPv4", "IPv6"], policy: "PreferDualStack"));

        Assert.Equal("2001:db8::", Ips(sixFirst));
        Assert.Equal("192.0.2.7", Ips(fourFirst));
        Assert.Equal("2001:db8::1", Ips(fourGone));
    }

    [Fact]
    public void PreferDualStack_that_gets_nothing_says_why_the_pools_are_full_not_which_family_they_lack()
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("v4", ["192.0.2.7"])));
        allocator.Reconcile(Svc("filler"));

        var result = allocator.Reconcile(Svc("s", families: ["IPv4", "IPv6"], policy: "PreferDualStack"));

        Assert.Equal("no available IPs in pool \"v4\" (1 of 1 assigned)", Assert.IsType<AllocationOutcome.Pending>(result).Reason);
    }

    [Fact]
    public void PreferDualStack_keeps_a_held_address_of_its_second_family_alone()
    {
        // As after coming from MetalLB: it holds just 1000::1 of a pool without IPv4.
        var pools = Pools(new PoolSpec("pool3", ["1000::/127"]), new PoolSpec("dual", ["192.0.2.0/29", "2001:db8::/125"]));
        var service = Svc("s", families: ["IPv4", "IPv6"], policy: "PreferDualStack") with { IngressIps = ["1000::1"] };

        var atStart = new Allocator(pools: pools).ReconcileAll([service]).Single();
        var onChange = new Allocator(pools: pools).Reconcile(service);

        Assert.Equal("1000::1", Ips(atStart));
        Assert.Equal("1000::1", Ips(onChange));
        Assert.Equal("pool3", onChange.Pool);
    }

    [Fact]
    public void PreferDualStack_keeps_its_IPv6_address_when_its_pool_loses_the_IPv4_range()
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("pool3", ["192.0.2.0/29", "1000::/127"])));
        allocator.Reconcile(Svc("filler", families: ["IPv6"]));
        var before = allocator.Reconcile(Svc("s", families: ["IPv4", "IPv6"], policy: "PreferDualStack"));
        Assert.Equal("192.0.2.0,1000::1", Ips(before));

        var changes = allocator.SetPools(Pools(new PoolSpec("pool3", ["1000::/127"])));

        Assert.True(allocator.TryGetAssignment("default", "s", out var ips, out _));
        Assert.Equal("1000::1", string.Join(",", ips));
        Assert.Equal("1000::1", Ips(Assert.Single(changes)));
    }

    [Fact]
    public void RequireDualStack_holding_one_family_is_topped_up_from_its_pool_or_allocated_anew()
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("v4", ["198.51.100.0/29"]), new PoolSpec("dual", ["192.0.2.0/29", "2001:db8::/125"])));

        var topped = allocator.Reconcile(Svc("topped", families: ["IPv4", "IPv6"], policy: "RequireDualStack") with { IngressIps = ["192.0.2.3"] });
        var moved = allocator.Reconcile(Svc("moved", families: ["IPv4", "IPv6"], policy: "RequireDualStack") with { IngressIps = ["198.51.100.3"] });

        Assert.Equal("192.0.2.3,2001:db8::", Ips(topped));
        Assert.Equal("192.0.2.0,2001:db8::1", Ips(moved));
    }

    [Theory]
    [InlineData("dns", "dns", 53, "UDP", 53, "TCP", true, null)]
    [InlineData("dns", "dns", 53, "TCP", 53, "TCP", false, "IP 192.0.2.5 is used by default/db and cannot be shared: port 53/TCP overlaps")]
    [InlineData("dns", "other", 53, "UDP", 53, "TCP", false, "IP 192.0.2.5 is used by default/db and cannot be shared: the lballocator.io/allow-shared-ip keys differ (\"other\" here, \"dns\" on default/db)")]
    [InlineData("", "dns", 53, "UDP", 53, "TCP", false, "IP 192.0.2.5 is used by default/db and cannot be shared: default/db has no lballocator.io/allow-shared-ip annotation")]
    [InlineData("dns", "", 53, "UDP", 53, "TCP", false, "IP 192.0.2.5 is used by default/db and cannot be shared: this Service has no lballocator.io/allow-shared-ip annotation")]
    public void Sharing_needs_the_same_key_and_disjoint_ports(string firstKey, string secondKey, int firstPort, string firstProtocol,
        int secondPort, string secondProtocol, bool shared, string? reason)
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("p", ["192.0.2.0/29"])));
        Dictionary<string, string> Request(string key)
        {
            var annotations = new Dictionary<string, string> { [ServiceAnnotations.LoadBalancerIPs] = "192.0.2.5" };
            if (key.Length > 0)
            {
                annotations[ServiceAnnotations.AllowSharedIp] = key;
            }

            return annotations;
        }

        allocator.Reconcile(Svc("db", annotations: Request(firstKey), port: firstPort, protocol: firstProtocol));

        var second = allocator.Reconcile(Svc("web", annotations: Request(secondKey), port: secondPort, protocol: secondProtocol));

        Assert.Equal(shared, second.Ips.Count == 1);
        Assert.Equal(reason, second.Problem);
        // A shared address counts once.
        Assert.Equal(1u, (uint)allocator.GetStats("p").AssignedIPv4);
    }

    [Fact]
    public void An_automatically_placed_service_joins_a_compatible_shared_address_before_a_free_one()
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("p", ["192.0.2.0/29"])));
        var key = new Dictionary<string, string> { [ServiceAnnotations.AllowSharedIp] = "dns" };
        allocator.Reconcile(Svc("first"));
        allocator.Reconcile(Svc("dns-tcp", annotations: key, port: 53, protocol: "TCP"));

        var udp = allocator.Reconcile(Svc("dns-udp", annotations: key, port: 53, protocol: "UDP"));
        var clash = allocator.Reconcile(Svc("dns-tcp-2", annotations: key, port: 53, protocol: "TCP"));

        Assert.Equal("192.0.2.1", Ips(udp));
        Assert.Equal("192.0.2.2", Ips(clash));
    }

    [Fact]
    public void Exhaustion_says_why_the_shared_addresses_did_not_fit()
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("p", ["192.0.2.5"])));
        var key = new Dictionary<string, string> { [ServiceAnnotations.AllowSharedIp] = "dns" };
        allocator.Reconcile(Svc("db", annotations: key, port: 53));

        var result = allocator.Reconcile(Svc("web", annotations: key, port: 53));

        Assert.Equal("no available IPs in pool \"p\" (1 of 1 assigned); IP 192.0.2.5 is used by default/db and cannot be shared: port 53/TCP overlaps", result.Problem);
    }

    [Fact]
    public void A_requested_shared_address_names_the_conflict()
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("p", ["192.0.2.0/29"])));
        var key = new Dictionary<string, string> { [ServiceAnnotations.AllowSharedIp] = "k", [ServiceAnnotations.LoadBalancerIPs] = "192.0.2.5" };
        allocator.Reconcile(Svc("db", annotations: key));

        var result = allocator.Reconcile(Svc("web", annotations: key));

        Assert.Equal("IP 192.0.2.5 is used by default/db and cannot be shared: port 80/TCP overlaps", result.Problem);
    }

    [Fact]
    public void A_restart_claims_addresses_from_status_first()
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("p", ["192.0.2.0/30"])));

        var results = allocator.ReconcileAll([Svc("new"), Svc("old") with { IngressIps = ["192.0.2.0"] }]);

        Assert.Equal("192.0.2.1", Ips(results[0]));
        Assert.Equal("192.0.2.0", Ips(results[1]));
    }

    [Theory]
    [InlineData("grow", new[] { "192.0.2.0/24" }, "192.0.2.2", "p")]
    [InlineData("rename", new[] { "192.0.2.0/30" }, "192.0.2.2", "renamed")]
    [InlineData("shrink", new[] { "192.0.2.0/31" }, "192.0.2.0", "p")]
    public void Pool_edits_keep_addresses_that_are_still_in_a_pool(string edit, string[] addresses, string expected, string pool)
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("p", ["192.0.2.0/30"])));
        allocator.Reconcile(Svc("filler"));
        allocator.Reconcile(Svc("filler2"));
        allocator.Reconcile(Svc("s"));
        allocator.Release("default", "filler");

        var changes = allocator.SetPools(Pools(new PoolSpec(edit == "rename" ? "renamed" : "p", addresses)));

        Assert.True(allocator.TryGetAssignment("default", "s", out var ips, out var actualPool), edit);
        Assert.Equal(expected, string.Join(",", ips));
        Assert.Equal(pool, actualPool);
        Assert.Equal(edit != "grow", changes.Any(c => c.Name == "s"));
    }

    [Fact]
    public void A_broken_annotation_keeps_the_current_address_and_reports_why()
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("p", ["192.0.2.0/30"])));
        allocator.Reconcile(Svc("s"));

        var result = allocator.Reconcile(Svc("s", annotations: new() { [ServiceAnnotations.LoadBalancerIPs] = "not-an-ip" }));

        var kept = Assert.IsType<AllocationOutcome.KeptInvalid>(result);
        Assert.Equal("192.0.2.0", Ips(kept));
        Assert.Equal("p", kept.Pool);
        Assert.Contains("\"not-an-ip\" is not a valid IP address", kept.Reason, StringComparison.Ordinal);
        Assert.False(result.Changed);
    }

    [Fact]
    public void Counts_of_a_64_are_exact()
    {
        var allocator = new Allocator(pools: Pools(new PoolSpec("v6", ["2001:db8::/64"])));
        allocator.Reconcile(Svc("s", families: ["IPv6"]));

        var stats = allocator.GetStats("v6");

        Assert.Equal(UInt128.One, stats.AssignedIPv6);
        Assert.Equal((UInt128.One << 64) - 1, stats.AvailableIPv6);
    }
}

using LbAllocator.Core;

namespace LbAllocator.Core.Tests;

/// <summary>The configuration snapshot the controller and the speaker build (<see cref="PoolHistory"/>): what runs and what is reported.</summary>
public class ConfigSnapshotTests
{
    private static readonly PoolSpec Web = new("web", ["192.0.2.0/29"], ServiceAllocation: new ServiceAllocationSpec(
        Priority: 1, NamespaceSelectors: [new LabelSelectorSpec(new Dictionary<string, string> { ["tier"] = "gold" })]));

    [Fact]
    public void A_broken_pool_edit_runs_the_last_valid_spec_and_reports_the_problem_of_the_current_one()
    {
        var history = new PoolHistory();
        var first = history.Apply([Web], [new L2AdvertisementSpec("ad", IpAddressPools: ["web", "gone"])]);

        var broken = history.Apply([Web with { Addresses = ["not an address"] }], [new L2AdvertisementSpec("ad", IpAddressPools: ["web", "gone"])]);

        Assert.Equal(["web"], broken.Config.Pools.Select(p => p.Name));
        Assert.Contains("web", broken.Stale);
        Assert.StartsWith("spec.addresses[0]: ", broken.Problem(ConfigValidator.PoolKind, "web"), StringComparison.Ordinal);
        Assert.Equal("spec.ipAddressPools[1]: IPAddressPool \"gone\" does not exist", broken.Problem(ConfigValidator.AdvertisementKind, "ad"));
        Assert.Null(broken.Problem(ConfigValidator.PoolKind, "other"));
        Assert.True(broken.RunsSamePoolsAs(first)); // nothing for the allocator to re-settle
    }

    [Fact]
    public void Pools_run_the_same_only_when_every_field_that_reaches_the_allocator_is_the_same()
    {
        var before = new PoolHistory().Apply([Web], []);

        Assert.True(new PoolHistory().Apply([Web with { }], [new L2AdvertisementSpec("new-ad")]).RunsSamePoolsAs(before));
        Assert.False(before.RunsSamePoolsAs(null));
        PoolSpec[] edits =
        [
            Web with { Addresses = ["192.0.2.0/28"] },
            Web with { AutoAssign = false },
            Web with { AvoidBuggyIPs = true },
            Web with { Labels = new Dictionary<string, string> { ["zone"] = "a" } },
            Web with { ServiceAllocation = Web.ServiceAllocation! with { Priority = 2 } },
            Web with { ServiceAllocation = Web.ServiceAllocation! with { NamespaceSelectors = [new LabelSelectorSpec(new Dictionary<string, string> { ["tier"] = "silver" })] } },
            Web with { ServiceAllocation = Web.ServiceAllocation! with { Namespaces = ["team"] } },
            Web with { ServiceAllocation = null },
        ];
        foreach (var edit in edits)
        {
            Assert.False(new PoolHistory().Apply([edit], []).RunsSamePoolsAs(before), edit.ToString());
        }
    }
}

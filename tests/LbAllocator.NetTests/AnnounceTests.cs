namespace LbAllocator.NetTests;

public class AnnounceTests(Lab lab) : IClassFixture<Lab>
{
    [Fact]
    public async Task Arping_and_ndisc6_get_the_owners_mac()
    {
        await lab.CreateServiceAsync("web", families: ["IPv4", "IPv6"]);
        var status = await WaitForL2StatusAsync("web");
        var owner = await lab.WaitForArpOwnerAsync("192.0.2.200");
        Assert.Equal(status, owner);
        Assert.Equal(lab.Macs[owner], await lab.Ndisc6Async("2001:db8::200"));
    }

    private async Task<string> WaitForL2StatusAsync(string service)
    {
        string? node = null;
        await Eventually.HoldsAsync(async () =>
        {
            node = (await lab.L2StatusAsync(service))?.Status?.Node;
            return node is null ? $"no ServiceL2Status for {service}" : null;
        }, TimeSpan.FromSeconds(30));
        return node!;
    }
}

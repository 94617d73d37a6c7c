namespace LbAllocator.Speaker.Tests;

/// <summary>The link-local address advertisements go out from, read from the kernel's /proc/net/if_inet6 format.</summary>
public sealed class NetworkInterfacesTests : IDisposable
{
    private readonly string _path = Path.GetTempFileName();

    public void Dispose() => File.Delete(_path);

    [Fact]
    public void The_link_local_address_of_the_interface_is_chosen()
    {
        File.WriteAllLines(_path,
        [
            "20010db8000000000000000000000011 03 40 00 80     eth0", // global scope
            "fe800000000000000000000000000009 04 40 20 80     eth1", // another interface
            "fe8000000000000000ff00fffe000011 03 40 20 80     eth0",
        ]);
        Assert.Equal(Convert.FromHexString("fe8000000000000000ff00fffe000011"), NetworkInterfaces.LinkLocal("eth0", _path));
    }

    [Theory]
    [InlineData("fe8000000000000000ff00fffe000011 03 40 20 c0     eth0", "tentative: duplicate address detection under way")]
    [InlineData("fe8000000000000000ff00fffe000011 03 40 20 88     eth0", "duplicate address detection failed")]
    [InlineData("20010db8000000000000000000000011 03 40 00 80     eth0", "only a global address")]
    [InlineData("fe8000000000000000ff00fffe000011 03 40 20 80     eth01", "only another interface's")]
    public void An_interface_without_a_usable_link_local_address_has_none(string line, string why)
    {
        File.WriteAllLines(_path, [line]);
        Assert.True(NetworkInterfaces.LinkLocal("eth0", _path) is null, why);
    }

    [Fact]
    public void No_ipv6_in_the_kernel_means_none() =>
        Assert.Null(NetworkInterfaces.LinkLocal("eth0", "/nonexistent/if_inet6"));

    [Fact]
    public void The_loopback_index_is_read_from_sysfs() =>
        Assert.Equal(1, NetworkInterfaces.Index("lo"));
}
